"""The champion: the model behind the newest *published* date before D.

It is read from that date's record in the object store's `publications` table (or a 0.4 manifest),
so a backfill of D sees exactly what the nightly
run of D saw. Items new since it was trained get no score from it (its lists come from the
items it knows).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec_core.models.base import Recommender
from genrec_core.models.registry import load_model
from genrec_core.publish.object_store import published
from genrec_core.storage import Storage


class KnownItemsOnly(Recommender):
    """A model trained on the first `n_known` items, scoring a wider catalogue (new items get -inf)."""

    name = "known_items_only"

    def __init__(self, model: Recommender, n_items: int) -> None:
        super().__init__()
        self.inner, self.n_items = model, n_items

    @property
    def sequential(self) -> bool:
        return self.inner.sequential

    def prepare(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> Any:
        return self.inner.prepare(history[:, : self.inner.n_items], users)

    def score_prepared(self, prepared: Any) -> Any:
        import torch

        known = self.inner.score_prepared(prepared)
        assert self.n_items is not None
        pad = torch.full(
            (known.shape[0], self.n_items - known.shape[1]), float("-inf"), dtype=known.dtype, device=known.device
        )
        return torch.cat([known, pad], dim=1)

    def score(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> Any:
        return self.score_prepared(self.prepare(history, users))

    def _fit(self, train: Any, options: Any) -> None:  # pragma: no cover - never trained
        raise TypeError("KnownItemsOnly wraps a trained model")

    def config_dict(self) -> dict[str, Any]:
        return self.inner.config_dict()

    def state(self) -> dict[str, Any]:
        return self.inner.state()

    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, Any]) -> None:
        raise TypeError("KnownItemsOnly is not saved or loaded")


def champion(storage: Storage, output_uri: str, run_date: dt.date) -> dict[str, Any] | None:
    """The record of the newest published date strictly before `run_date` (it names the model), or None."""
    records = published(storage, output_uri)
    earlier = [day for day in records if day < run_date]
    return records[max(earlier)] if earlier else None


def champion_model(manifest: dict[str, Any], storage: Storage, n_items: int, device: str = "cpu") -> Recommender:
    model = load_model(manifest["model_uri"], storage, device=device)
    if model.n_items is not None and model.n_items > n_items:
        raise ValueError(
            f"champion {manifest.get('model_version')} knows {model.n_items} items, more than today's "
            f"{n_items}: vocabularies are append-only, so its artifacts do not belong to this output"
        )
    return model if model.n_items == n_items else KnownItemsOnly(model, n_items)
