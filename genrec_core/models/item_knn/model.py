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

# Memory bounds: the fit computes co-occurrences for a block of columns at a time ([items, block] float64),
# and scoring multiplies by a dense copy of the similarity only while it is this small (else a sparse product).
BLOCK_BYTES = 256 << 20
DENSE_SIMILARITY_BYTES = 1 << 30


def block_columns(n_items: int) -> int:
    """Similarity columns per block of the fit, so that a block stays within BLOCK_BYTES."""
    return max(1, min(n_items, BLOCK_BYTES // (8 * max(n_items, 1))))


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
        rows, cols, vals = [], [], []
        xt = x.T.tocsr()
        step = block_columns(n)
        for start in range(0, n, step):
            block = np.arange(start, min(start + step, n))
            co = (xt @ x[:, block]).toarray()  # [items, block]
            sim = co / (norms[:, None] * norms[None, block] + self.config.shrink + 1e-12)
            sim[block, np.arange(len(block))] = 0.0
            top = (
                np.argpartition(-sim, keep - 1, axis=0)[:keep]
                if keep < n
                else np.tile(np.arange(n)[:, None], (1, len(block)))
            )
            top_vals = np.take_along_axis(sim, top, axis=0)
            positive = top_vals > 0
            rows.append(top[positive])
            cols.append(np.broadcast_to(block[None, :], top.shape)[positive])
            vals.append(top_vals[positive])
        self.similarity = sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )
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
