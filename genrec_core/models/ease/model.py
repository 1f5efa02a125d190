"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019).

B = argmin ||X - XB||^2 + l2 ||B||^2 subject to diag(B) = 0, in closed form:
P = (X^T X + l2 I)^-1,  B_ij = -P_ij / P_jj (i != j),  B_jj = 0.  Scores = X B.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from genrec_core.data.interactions import Interactions
from genrec_core.models.base import FitOptions, Recommender
from genrec_core.models.ease import SPEC, EASEConfig
from genrec_core.models.torch_utils import binary_rows_tensor


class EASE(Recommender):
    spec = SPEC

    def __init__(self, config: EASEConfig | None = None) -> None:
        super().__init__()
        self.config = config or EASEConfig()
        self.weights: torch.Tensor | None = None

    def _fit(self, train: Interactions, options: FitOptions) -> None:
        if train.n_items > self.config.max_items:
            raise ValueError(
                f"ease: {train.n_items} items exceed ease.max_items={self.config.max_items} "
                "(the Gram matrix is items x items); use mult_vae or item_knn"
            )
        x = train.binary()
        gram = torch.from_numpy((x.T @ x).toarray().astype(np.float64))
        gram.diagonal().add_(self.config.l2)
        precision = torch.linalg.inv(gram)
        weights = precision / (-precision.diagonal())
        weights.fill_diagonal_(0.0)
        # inv() returns a column-major matrix; row-major makes the sparse product in `score` about 25x faster
        self.weights = weights.float().contiguous().to(self.device)

    @torch.no_grad()
    def score(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> torch.Tensor:
        self._check_history(history)
        assert self.weights is not None
        return torch.sparse.mm(binary_rows_tensor(history, self.device), self.weights)

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump()

    def state(self) -> dict[str, torch.Tensor]:
        assert self.weights is not None
        return {"weights": self.weights}

    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, torch.Tensor]) -> None:
        self.config = EASEConfig(**config)
        self.n_items = n_items
        self.weights = state["weights"].to(self.device)
