"""Histories in time order, vectorised: no users x items dense matrix, no Python loop per user.

An ordered history is a CSR matrix whose stored values are each item's place in the user's
history (1 = reached first, n = the latest), the `order` of `Interactions`. Sequence models read
the last `max_length` places as a right-aligned row of item indices.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PAD = -1  # a place before a short history's first item


def ranks_in_rows(indptr: np.ndarray, keys: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """1-based rank of each stored entry within its CSR row by (`keys`, then `columns`): ties broken by the
    item index, so the order is the same on every run."""
    lengths = np.diff(indptr)
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    by_place = np.lexsort((columns, keys, rows))
    ranks = np.empty(len(keys), dtype=np.float32)
    ranks[by_place] = np.arange(len(keys), dtype=np.int64) - np.repeat(indptr[:-1], lengths) + 1
    return ranks


def from_lists(sequences: list[list[int]], n_items: int) -> sp.csr_matrix:
    """An ordered history from item lists in time order (an item repeated keeps its first place)."""
    rows, cols, places = [], [], []
    for user, items in enumerate(sequences):
        first: dict[int, int] = {}
        for item in items:
            first.setdefault(item, len(first) + 1)
        rows += [user] * len(first)
        cols += list(first)
        places += list(first.values())
    matrix = sp.csr_matrix(
        (np.asarray(places, np.float32), (np.asarray(rows, np.int64), np.asarray(cols, np.int64))),
        shape=(len(sequences), n_items),
    )
    matrix.sort_indices()
    return matrix


def last_items(order: sp.csr_matrix, max_length: int) -> np.ndarray:
    """[rows, max_length] int64: each row's latest `max_length` items, oldest first and right-aligned,
    PAD before a shorter history. `order`'s values are places (1..n per row, as `ranks_in_rows` gives)."""
    order = order.tocsr()
    lengths = np.diff(order.indptr).astype(np.int64)
    rows = np.repeat(np.arange(order.shape[0], dtype=np.int64), lengths)
    places = order.data.astype(np.int64)
    column = max_length - 1 - (np.repeat(lengths, lengths) - places)  # the latest item lands in the last column
    kept = column >= 0
    out = np.full((order.shape[0], max_length), PAD, dtype=np.int64)
    out[rows[kept], column[kept]] = order.indices[kept]
    return out


def without_leading_padding(window: np.ndarray, keep: int = 1) -> np.ndarray:
    """`window` (right-aligned rows) without the leading columns that are PAD in every row, at least `keep`
    columns: a batch of short histories need not pay for the longest one a model allows."""
    real = (window != PAD).any(axis=0)
    first = int(np.argmax(real)) if real.any() else window.shape[1]
    return window[:, min(first, window.shape[1] - keep) :]


def check_places(order: sp.csr_matrix, what: str = "history") -> None:
    """Raise ValueError unless every row's values are its places 1..n (a weight matrix is not an order)."""
    if order.nnz == 0:
        return
    lengths = np.diff(order.indptr).astype(np.int64)
    rows = np.repeat(np.arange(order.shape[0], dtype=np.int64), lengths)
    places = np.clip(order.data, 0, None).astype(np.int64)
    bad = (order.data != places) | (places < 1) | (places > np.repeat(lengths, lengths))
    key = rows * (int(lengths.max()) + 2) + np.minimum(places, lengths.max() + 1)
    by_key = np.argsort(key, kind="stable")
    bad[by_key[1:]] |= key[by_key[1:]] == key[by_key[:-1]]  # a place held twice in a row
    if bad.any():
        raise ValueError(
            f"{what}: row {int(rows[np.flatnonzero(bad)[0]])} does not hold places 1..n (an ordered history, "
            "Interactions.order); was a weight matrix passed where a sequential model needs the time order?"
        )


def transitions(order: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(from_item, to_item) of every pair of consecutive places in every row."""
    order = order.tocsr()
    lengths = np.diff(order.indptr)
    rows = np.repeat(np.arange(order.shape[0], dtype=np.int64), lengths)
    by_place = np.lexsort((order.data, rows))
    items, rows = order.indices[by_place], rows[by_place]
    follows = rows[1:] == rows[:-1]
    return items[:-1][follows].astype(np.int64), items[1:][follows].astype(np.int64)
