"""Transition counts: P(next = j | previous = i) = count(i -> j) / count(i -> anything), counted over
consecutive places of the training histories.

score(u, j) = sum over the user's latest `window` items (the m-th latest weighted 1/m) of P(j | item)
+ backoff * popularity(j) / max popularity, so an item never seen after the user's latest one falls back
to popularity, and ties among transitions are broken by it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from genrec_core.data.interactions import Interactions
from genrec_core.data.sequences import PAD, check_places, last_items, transitions
from genrec_core.models.base import FitOptions, Recommender
from genrec_core.models.transitions import SPEC, TransitionsConfig


class Transitions(Recommender):
    spec = SPEC

    def __init__(self, config: TransitionsConfig | None = None) -> None:
        super().__init__()
        self.config = config or TransitionsConfig()
        self.probabilities: sp.csr_matrix | None = None  # [items, items], rows sum to 1 (or 0: never followed)
        self.popularity: np.ndarray | None = None  # [items], scaled to [0, 1]

    def _fit(self, train: Interactions, options: FitOptions) -> None:
        order = train.ordered()
        check_places(order, f"{self.name}: training history")
        n = train.n_items
        before, after = transitions(order)
        counts = sp.csr_matrix((np.ones(len(before), np.float64), (before, after)), shape=(n, n))
        totals = np.asarray(counts.sum(axis=1)).ravel()
        self.probabilities = (sp.diags(1.0 / np.maximum(totals, 1.0)) @ counts).astype(np.float32).tocsr()
        popularity = np.bincount(order.indices, minlength=n).astype(np.float32)
        self.popularity = popularity / max(float(popularity.max(initial=0.0)), 1.0)

    def score(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> torch.Tensor:
        self._check_history(history)
        check_places(history, f"{self.name}: history")
        assert self.probabilities is not None and self.popularity is not None
        window = self.config.window
        latest = last_items(history, window)  # oldest first: column window-1 is the latest item
        weights = np.broadcast_to(1.0 / np.arange(window, 0, -1, dtype=np.float32), latest.shape)
        rows = np.broadcast_to(np.arange(len(latest))[:, None], latest.shape)
        real = latest != PAD
        recent = sp.csr_matrix(
            (weights[real], (rows[real], latest[real])), shape=(history.shape[0], self.probabilities.shape[0])
        )
        scores = (recent @ self.probabilities).toarray() + self.config.backoff * self.popularity[None, :]
        return torch.from_numpy(scores.astype(np.float32)).to(self.device)

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump()

    def state(self) -> dict[str, torch.Tensor]:
        assert self.probabilities is not None and self.popularity is not None
        p = self.probabilities
        return {
            "indptr": torch.from_numpy(p.indptr.astype(np.int64)),
            "indices": torch.from_numpy(p.indices.astype(np.int64)),
            "values": torch.from_numpy(p.data.astype(np.float32)),
            "popularity": torch.from_numpy(self.popularity),
        }

    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, torch.Tensor]) -> None:
        self.config = TransitionsConfig.model_validate(config)
        self.n_items = n_items
        self.probabilities = sp.csr_matrix(
            (state["values"].cpu().numpy(), state["indices"].cpu().numpy(), state["indptr"].cpu().numpy()),
            shape=(n_items, n_items),
        )
        self.popularity = state["popularity"].cpu().numpy()
