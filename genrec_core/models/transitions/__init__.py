"""Item-to-next-item transitions: the sequence-aware baseline (no torch here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from genrec_core.models.spec import ModelConfig, ModelSpec

if TYPE_CHECKING:
    import optuna


class TransitionsConfig(ModelConfig):
    """First-order transition counts with a popularity back-off."""

    window: int = Field(1, ge=1, description="latest items whose transitions count; the m-th latest weighs 1/m")
    backoff: float = Field(
        1e-3, ge=0.0, description="weight of popularity (scaled to [0, 1]) added to the transition probabilities"
    )


def search_space(t: optuna.trial.BaseTrial) -> dict[str, Any]:
    return {"window": t.suggest_int("window", 1, 5), "backoff": t.suggest_float("backoff", 1e-4, 1e-1, log=True)}


SPEC = ModelSpec(
    name="transitions",
    implementation="genrec_core.models.transitions.model:Transitions",
    config_class=TransitionsConfig,
    search_space=search_space,
    baseline=True,
    sequential=True,
    summary="Markov baseline: how often each item followed the user's latest item, then popularity",
)
