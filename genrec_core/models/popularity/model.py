"""Most-popular baseline: every user gets the items with the most interacting users."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from genrec_core.data.interactions import Interactions
from genrec_core.models.base import FitOptions, Recommender
from genrec_core.models.popularity import SPEC


class Popularity(Recommender):
    spec = SPEC

    def __init__(self, config: None = None) -> None:
        super().__init__()
        self.item_scores: torch.Tensor | None = None

    @classmethod
    def from_item_counts(cls, counts: np.ndarray, device: str = "cpu") -> Popularity:
        """A fitted model from per-item interaction counts (e.g. accumulated block by block)."""
        model = cls()
        model.device = device
        model.n_items = len(counts)
        counts = counts.astype(np.float32)
        model.item_scores = torch.from_numpy(counts / max(float(counts.max(initial=0.0)), 1.0)).to(device)
        return model

    def _fit(self, train: Interactions, options: FitOptions) -> None:
        counts = np.asarray((train.matrix > 0).sum(axis=0)).ravel().astype(np.float32)
        self.item_scores = torch.from_numpy(counts / max(counts.max(), 1.0)).to(self.device)

    def score(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> torch.Tensor:
        self._check_history(history)
        assert self.item_scores is not None
        return self.item_scores.unsqueeze(0).expand(history.shape[0], -1).clone()

    def config_dict(self) -> dict[str, Any]:
        return {}

    def state(self) -> dict[str, torch.Tensor]:
        assert self.item_scores is not None
        return {"item_scores": self.item_scores}

    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, torch.Tensor]) -> None:
        self.n_items = n_items
        self.item_scores = state["item_scores"].to(self.device)
