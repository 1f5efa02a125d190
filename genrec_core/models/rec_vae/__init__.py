"""RecVAE (Shenbin et al., WSDM 2020): its settings section and self-description (no torch here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from genrec_core.models.spec import ItemWidthConfig, LinearExpertConfig, ModelSpec, SampledSoftmaxConfig

if TYPE_CHECKING:
    import optuna


class RecVAEConfig(LinearExpertConfig, SampledSoftmaxConfig, ItemWidthConfig):
    """RecVAE hyperparameters; defaults follow the authors' code except `encoder_passes` (see the README's
    defaults table: one encoder pass per epoch measured as good or better at a third of the time)."""

    latent_dim: int = Field(200, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    gamma: float = Field(0.005, gt=0.0, description="KL weight per interaction of the user (beta = gamma * |x|)")
    prior_weights: tuple[float, float, float] = Field(
        (0.15, 0.75, 0.1), description="composite prior: standard normal, previous posterior, wide normal"
    )
    encoder_passes: int = Field(1, ge=1, description="encoder passes over the data per epoch (the authors use 3)")
    decoder_passes: int = Field(1, ge=1, description="decoder passes over the data per epoch")
    epochs: int = Field(50, ge=1)
    finetune_epochs: int = Field(5, ge=1)
    batch_size: int = Field(500, ge=1)
    learning_rate: float = Field(5e-4, gt=0.0)

    @field_validator("prior_weights")
    @classmethod
    def _weights_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) < 0 or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError("prior weights must be >= 0 and sum to 1")
        return value


def search_space(t: optuna.trial.BaseTrial) -> dict[str, Any]:
    return {
        "hidden_dim": t.suggest_categorical("hidden_dim", [300, 600]),
        "latent_dim": t.suggest_categorical("latent_dim", [100, 200]),
        "dropout": t.suggest_float("dropout", 0.2, 0.7),
        "gamma": t.suggest_float("gamma", 1e-3, 2e-2, log=True),
        "learning_rate": t.suggest_float("learning_rate", 1e-4, 2e-3, log=True),
    }


SPEC = ModelSpec(
    name="rec_vae",
    implementation="genrec_core.models.rec_vae.model:RecVAE",
    config_class=RecVAEConfig,
    fine_tunable=True,
    iterative=True,
    search_space=search_space,
    summary="RecVAE: composite prior, beta = gamma * |x|, alternating encoder/decoder updates",
)
