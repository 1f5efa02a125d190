"""EASE (Steck, WWW 2019): its settings section and self-description (no torch here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from genrec_core.models.spec import ModelConfig, ModelSpec, max_items_limit

if TYPE_CHECKING:
    import optuna


class EASEConfig(ModelConfig):
    """Closed-form item-item weights with an L2 penalty."""

    l2: float = Field(500.0, gt=0.0)
    max_items: int = Field(30_000, ge=1, description="refuse larger catalogues: the Gram matrix is items^2 floats")


def search_space(t: optuna.trial.BaseTrial) -> dict[str, Any]:
    return {"l2": t.suggest_float("l2", 10.0, 5000.0, log=True)}


SPEC = ModelSpec(
    name="ease",
    implementation="genrec_core.models.ease.model:EASE",
    config_class=EASEConfig,
    search_space=search_space,
    baseline=True,
    item_limit=max_items_limit,
    summary="EASE: closed form; refuses catalogues over ease.max_items (the Gram matrix is items^2)",
)
