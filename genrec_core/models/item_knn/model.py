"""Item-based kNN: cosine similarity with shrinkage, the `neighbors` most similar items kept per item.

sim(i, j) = |U_i & U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink);  score(u, j) = sum over i in history(u) of sim(i, j).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from genrec_core.data.interactions import Interactions
from genrec_core.models.base import FitOptions, Recommender
from genrec_core.models.item_knn import SPEC, ItemKNNConfig
from genrec_core.models.torch_utils import binary_csr, binary_rows_tensor, dense_scores

# Memory bounds: the fit computes the co-occurrences of a block of columns at a time, sparse, with at most about
# BLOCK_ENTRIES of them (bounded before the product); scoring multiplies by a dense copy of the similarity only
# while it is this small (else a sparse product).
BLOCK_ENTRIES = 16_000_000
DENSE_SIMILARITY_BYTES = 1 << 30


def column_blocks(x: sp.csc_matrix, budget: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of item columns whose co-occurrence columns hold at most ~`budget` entries in all
    (a column alone may exceed it). Column j's entries are at most the sum of its users' history lengths."""
    history_lengths = np.diff(x.tocsr().indptr).astype(np.float64)
    cumulative = np.cumsum(x.T @ history_lengths)
    blocks, start, n = [], 0, x.shape[1]
    while start < n:
        before = cumulative[start - 1] if start else 0.0
        stop = max(int(np.searchsorted(cumulative, before + budget, side="right")), start + 1)
        blocks.append((start, min(stop, n)))
        start = stop
    return blocks


def top_neighbours(
    co: sp.csc_matrix, block: np.ndarray, norms: np.ndarray, keep: int, shrink: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, similarities) of the `keep` most similar items of each column in `block`, from the
    block's co-occurrence counts `co` [items, block]: positive similarities only, none of an item with itself,
    ties to the lower item index."""
    col = np.repeat(np.arange(len(block)), np.diff(co.indptr))
    row = co.indices.astype(np.int64)
    sim = co.data.astype(np.float64) / (norms[row] * norms[block][col] + shrink + 1e-12)
    useful = (row != block[col]) & (sim > 0)
    row, col, sim = row[useful], col[useful], sim[useful]
    order = np.lexsort((row, -sim, col))  # by column, then most similar first, then lower item
    row, col, sim = row[order], col[order], sim[order]
    rank = np.arange(len(col)) - np.searchsorted(col, col)  # position within its column
    top = rank < keep
    return row[top], block[col[top]], sim[top]


class ItemKNN(Recommender):
    spec = SPEC

    def __init__(self, config: ItemKNNConfig | None = None) -> None:
        super().__init__()
        self.config = config or ItemKNNConfig()
        self.similarity: sp.csr_matrix | None = None
        self._similarity_t: torch.Tensor | None = None

    def _fit(self, train: Interactions, options: FitOptions) -> None:
        x = train.binary().tocsc()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
        n = train.n_items
        keep = min(self.config.neighbors, max(n - 1, 1))
        xt = x.T.tocsr()
        parts = [
            top_neighbours((xt @ x[:, start:stop]).tocsc(), np.arange(start, stop), norms, keep, self.config.shrink)
            for start, stop in column_blocks(x, BLOCK_ENTRIES)
        ]
        rows, cols, vals = (np.concatenate([part[i] for part in parts]) for i in range(3))
        self.similarity = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(n, n))
        self._similarity_t = None

    def _dense_similarity(self) -> torch.Tensor:
        if self._similarity_t is None:
            assert self.similarity is not None
            self._similarity_t = torch.from_numpy(self.similarity.toarray()).to(self.device)
        return self._similarity_t

    @torch.no_grad()
    def score(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> torch.Tensor:
        self._check_history(history)
        if 4 * history.shape[1] ** 2 <= DENSE_SIMILARITY_BYTES:
            return torch.sparse.mm(binary_rows_tensor(history, self.device), self._dense_similarity())
        assert self.similarity is not None  # a large catalogue: the product stays sparse until the chunk's scores
        return dense_scores(binary_csr(history) @ self.similarity, self.device)

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump()

    def state(self) -> dict[str, torch.Tensor]:
        assert self.similarity is not None
        s = self.similarity.tocsr()
        return {
            "indptr": torch.from_numpy(s.indptr.astype(np.int64)),
            "indices": torch.from_numpy(s.indices.astype(np.int64)),
            "values": torch.from_numpy(s.data.astype(np.float32)),
        }

    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, torch.Tensor]) -> None:
        self.config = ItemKNNConfig(**config)
        self.n_items = n_items
        self.similarity = sp.csr_matrix(
            (state["values"].numpy(), state["indices"].numpy(), state["indptr"].numpy()), shape=(n_items, n_items)
        )
        self._similarity_t = None
