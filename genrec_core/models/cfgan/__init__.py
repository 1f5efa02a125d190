"""CFGAN (Chae et al., CIKM 2018): its settings section and self-description (no torch here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from genrec_core.models.spec import ModelConfig, ModelSpec

if TYPE_CHECKING:
    import optuna


class CFGANConfig(ModelConfig):
    """CFGAN hyperparameters, the ZR + PM variant."""

    generator_hidden: int = Field(400, ge=1)
    generator_layers: int = Field(1, ge=1)
    discriminator_hidden: int = Field(125, ge=1)
    discriminator_layers: int = Field(4, ge=1)
    zr_ratio: float = Field(0.4, ge=0.0, le=1.0, description="share of unseen items pushed to zero (ZR)")
    pm_ratio: float = Field(0.4, ge=0.0, le=1.0, description="share of unseen items shown to the discriminator (PM)")
    zr_weight: float = Field(0.03, ge=0.0, description="alpha: weight of the zero-reconstruction term")
    discriminator_steps: int = Field(1, ge=1)
    generator_steps: int = Field(1, ge=1)
    epochs: int = Field(200, ge=1)
    finetune_epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=1, description="256 with 4e-4 measured as good as 64 with 1e-4, in half the time")
    learning_rate: float = Field(4e-4, gt=0.0)


def search_space(t: optuna.trial.BaseTrial) -> dict[str, Any]:
    return {
        "zr_ratio": t.suggest_float("zr_ratio", 0.1, 0.9),
        "pm_ratio": t.suggest_float("pm_ratio", 0.1, 0.9),
        "zr_weight": t.suggest_float("zr_weight", 1e-3, 0.3, log=True),
        "learning_rate": t.suggest_float("learning_rate", 3e-5, 1e-3, log=True),
    }


SPEC = ModelSpec(
    name="cfgan",
    implementation="genrec_core.models.cfgan.model:CFGAN",
    config_class=CFGANConfig,
    fine_tunable=True,
    iterative=True,
    search_space=search_space,
    summary="CFGAN: history-conditioned generator and discriminator, ZR + PM negative sampling",
)
