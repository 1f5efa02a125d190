"""The quality gate: champion/challenger on the held-out day, plus the data checks.

The champion is the model behind the newest *published* date before D (read from that
date's S3 manifest, so a backfill of D sees exactly what the nightly run of D saw). It
is evaluated on D's held-out day beside the new model; items new since it was trained
get no score from it (its lists come from the items it knows).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec_core.models.base import Recommender
from genrec_core.storage import Storage, join

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    forced: bool
    reasons: list[str] = field(default_factory=list)
    metric: str = ""
    challenger: float | None = None
    champion: float | None = None
    champion_version: str | None = None
    popularity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class KnownItemsOnly(Recommender):
    """A model trained on the first `n_known` items, scoring a wider catalogue (new items get -inf)."""

    name = "known_items_only"

    def __init__(self, model: Recommender, n_items: int) -> None:
        super().__init__()
        self.inner, self.n_items = model, n_items

    def prepare(self, history: sp.csr_matrix) -> Any:
        return self.inner.prepare(history[:, : self.inner.n_items])

    def score_prepared(self, prepared: Any) -> Any:
        import torch

        known = self.inner.score_prepared(prepared)
        pad = torch.full((known.shape[0], self.n_items - known.shape[1]), float("-inf"), dtype=known.dtype,
                         device=known.device)
        return torch.cat([known, pad], dim=1)

    def score(self, history: sp.csr_matrix) -> Any:
        return self.score_prepared(self.prepare(history))

    def _fit(self, train: Any, options: Any) -> None:  # pragma: no cover - never trained
        raise TypeError("KnownItemsOnly wraps a trained model")

    def config_dict(self) -> dict[str, Any]:
        return self.inner.config_dict()

    def state(self) -> dict[str, Any]:
        return self.inner.state()

    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, Any]) -> None:
        raise TypeError("KnownItemsOnly is not saved or loaded")


def champion(storage: Storage, output_uri: str, run_date: dt.date) -> dict[str, Any] | None:
    """The manifest of the newest published date strictly before `run_date` (it names the model), or None."""
    from genrec_core.publish.object_store import MANIFEST, manifested_dates

    for day in manifested_dates(storage, output_uri):
        if day < run_date:
            return storage.read_json(join(output_uri, "recommendations", f"dt={day}", MANIFEST))
    return None


def champion_model(manifest: dict[str, Any], storage: Storage, n_items: int, device: str = "cpu") -> Recommender:
    model = Recommender.load(manifest["model_uri"], storage, device=device)
    if model.n_items is not None and model.n_items > n_items:
        raise ValueError(f"champion {manifest.get('model_version')} knows {model.n_items} items, more than today's "
                         f"{n_items}: vocabularies are append-only, so its artifacts do not belong to this output")
    return model if model.n_items == n_items else KnownItemsOnly(model, n_items)


def decide(metric: str, challenger: dict[str, Any], popularity: dict[str, Any], champion_metrics: dict[str, Any] | None,
           champion_version: str | None, margin: float, min_users: int, force: bool = False) -> GateDecision:
    """Pass when the new model beats popularity and is at most `margin` (relative) below the champion.

    `force` publishes anyway but keeps the reasons, so the run record says what was overridden.
    """
    reasons = []
    value, pop = challenger.get(metric), popularity.get(metric)
    evaluated = challenger.get("users_evaluated", 0)
    if evaluated < min_users:
        reasons.append(f"only {evaluated} users could be evaluated on the held-out day (need {min_users})")
    if value is None or not np.isfinite(value):
        reasons.append(f"the new model has no {metric}")
    elif pop is not None and value <= pop:
        reasons.append(f"the new model's {metric} {value:.4f} does not beat popularity's {pop:.4f}")
    best = champion_metrics.get(metric) if champion_metrics else None
    if value is not None and best is not None and value < best * (1.0 - margin):
        reasons.append(f"the new model's {metric} {value:.4f} is more than {margin:.0%} below the champion "
                       f"{champion_version}'s {best:.4f}")
    return GateDecision(passed=not reasons or force, forced=force and bool(reasons), reasons=reasons, metric=metric,
                        challenger=value, champion=best, champion_version=champion_version, popularity=pop)
