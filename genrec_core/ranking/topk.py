"""The top-k kernel: score a chunk of users, mask seen and ineligible items, take top-k.

It needs only a `Scorer` (what every model is), so both the score stage and early stopping
(validation NDCG inside a model's fit) use it without importing either.

Memory is bounded by `chunk_size x n_items`, never by the number of users. Ties are
broken exactly and deterministically (higher score first, then lower item index), so
any chunk size or shard count gives the same lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import torch


class Scorer(Protocol):
    """What the kernel needs of a model: CPU-side preparation of a chunk, then its scores [rows, items]."""

    def prepare(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> Any: ...

    def score_prepared(self, prepared: Any) -> torch.Tensor: ...


@dataclass(frozen=True)
class TopKChunk:
    """Top-k for a chunk of users; `items` is -1 (score -inf) where fewer than k items were eligible."""

    users: np.ndarray  # [n] user indices
    items: np.ndarray  # [n, k] item indices, best first
    scores: np.ndarray  # [n, k] float32


def _keyed_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Exact top-k indices via one int64 key per score: order-preserving float bits, then inverted item index."""
    import torch

    bits = scores.view(torch.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: flip magnitude bits
    n_items = scores.shape[1]
    tiebreak = (n_items - 1) - torch.arange(n_items, device=scores.device, dtype=torch.int64)
    keys = (ordered.to(torch.int64) << 32) | tiebreak
    return torch.topk(keys, k, dim=1, sorted=True).indices


def chunk_rows(n_items: int, chunk_size: int = 0, budget_mb: int = 256) -> int:
    """Users per chunk: `chunk_size` when set, else as many as fit a float32 [rows, n_items] in `budget_mb`."""
    if chunk_size > 0:
        return chunk_size
    return max(1, (budget_mb * 1024 * 1024) // (4 * max(n_items, 1)))


def deterministic_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, values) of the k best items per row; ties go to the lower item index. NaN counts as -inf.

    A float `topk` of k+1 picks the lists: a row has a tie at the boundary exactly when its
    (k+1)-th score equals its k-th, and only such rows are redone with exact int64 keys.
    Each list is then ordered by (score desc, item asc). Everything but the one `topk` pass
    works on the small [rows, k+1] result.
    """
    import torch

    scores = scores.float()
    n_items = scores.shape[1]
    if k >= n_items:  # the whole (small) catalogue: exact keys for every row
        clean = scores.masked_fill(torch.isnan(scores), float("-inf"))
        indices = _keyed_top_k(clean, k)
        return indices, torch.gather(clean, 1, indices)
    values, indices = torch.topk(scores, k + 1, dim=1, sorted=True)
    if torch.isnan(values).any():  # topk ranks NaN first, so any NaN in a row shows up here
        scores = scores.masked_fill(torch.isnan(scores), float("-inf"))
        values, indices = torch.topk(scores, k + 1, dim=1, sorted=True)
    tied = torch.nonzero(values[:, k] == values[:, k - 1]).flatten()
    values, indices = values[:, :k].contiguous(), indices[:, :k].contiguous()
    if len(tied):
        indices[tied] = _keyed_top_k(scores[tied], k)
        values[tied] = torch.gather(scores[tied], 1, indices[tied])
    by_item = torch.argsort(indices, dim=1)
    indices, values = torch.gather(indices, 1, by_item), torch.gather(values, 1, by_item)
    by_score = torch.argsort(values, dim=1, descending=True, stable=True)
    return torch.gather(indices, 1, by_score), torch.gather(values, 1, by_score)


def iter_top_k(
    model: Scorer,
    history: sp.csr_matrix,
    users: np.ndarray,
    k: int,
    chunk_size: int,
    seen: sp.csr_matrix | None = None,
    item_mask: np.ndarray | None = None,
    first_user: int = 0,
) -> Iterator[TopKChunk]:
    """Yield top-k chunks for `users` (row indices).

    `history` is what the model encodes; items in `seen` (default: `history`) are never
    recommended; `item_mask` (bool per item) marks the eligible items (default: all).
    History row r holds the user at index `first_user + r` of the user vocabulary; the model
    gets those indices with the rows (a model that scores known users by identity needs them).
    The next chunk's inputs are prepared on a helper thread while this one computes.
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch

    seen = history if seen is None else seen
    k_eff = min(k, history.shape[1])
    starts = list(range(0, len(users), chunk_size))
    ineligible = None

    def prepare(start: int) -> tuple[np.ndarray, Any, torch.Tensor, torch.Tensor]:
        rows = users[start : start + chunk_size]
        coo = seen[rows].tocoo()
        return (
            rows,
            model.prepare(history[rows], rows + first_user),
            torch.from_numpy(coo.row.astype(np.int64)),
            torch.from_numpy(coo.col.astype(np.int64)),
        )

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="genrec-prefetch") as pool:
        pending = pool.submit(prepare, starts[0]) if starts else None
        for i in range(len(starts)):
            assert pending is not None
            rows, prepared, seen_rows, seen_cols = pending.result()
            pending = pool.submit(prepare, starts[i + 1]) if i + 1 < len(starts) else None
            scores = model.score_prepared(prepared).float()
            if item_mask is not None and ineligible is None:
                ineligible = torch.from_numpy(~item_mask).to(scores.device)
            items, top_scores = masked_top_k(scores, seen_rows, seen_cols, k_eff, ineligible)
            del scores  # free the chunk's score matrix before the next one is computed
            yield TopKChunk(rows, items, top_scores)


def masked_top_k(
    scores: torch.Tensor,
    seen_rows: torch.Tensor,
    seen_cols: torch.Tensor,
    k: int,
    ineligible: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores) [rows, k] of a chunk's scores with the (row, item) pairs seen and the ineligible items
    excluded, in place: -inf, and -1 items where fewer than k were left."""
    if ineligible is not None:
        scores.masked_fill_(ineligible, float("-inf"))
    if len(seen_rows):
        scores[seen_rows.to(scores.device), seen_cols.to(scores.device)] = float("-inf")
    top, values = deterministic_top_k(scores, k)
    items = top.cpu().numpy().astype(np.int64)
    top_scores = values.cpu().numpy().astype(np.float32)
    items[~np.isfinite(top_scores)] = -1
    return items, top_scores
