"""Item-based kNN: its settings section and self-description (no torch here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from genrec_core.models.spec import ModelConfig, ModelSpec

if TYPE_CHECKING:
    import optuna


class ItemKNNConfig(ModelConfig):
    """Item-based k-nearest neighbours, cosine similarity with shrinkage."""

    neighbors: int = Field(100, ge=1)
    shrink: float = Field(10.0, ge=0.0)


def search_space(t: optuna.trial.BaseTrial) -> dict[str, Any]:
    return {
        "neighbors": t.suggest_int("neighbors", 20, 400, log=True),
        "shrink": t.suggest_float("shrink", 0.0, 100.0),
    }


SPEC = ModelSpec(
    name="item_knn",
    implementation="genrec_core.models.item_knn.model:ItemKNN",
    config_class=ItemKNNConfig,
    search_space=search_space,
    baseline=True,
    summary="ItemKNN: item-item cosine with shrinkage, `neighbors` kept per item",
)
