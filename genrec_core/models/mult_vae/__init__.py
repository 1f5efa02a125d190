"""Mult-VAE (Liang et al., WWW 2018): its settings section and self-description (no torch here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from genrec_core.models.spec import ItemWidthConfig, LinearExpertConfig, ModelSpec, SampledSoftmaxConfig

if TYPE_CHECKING:
    import optuna


class MultVAEConfig(LinearExpertConfig, SampledSoftmaxConfig, ItemWidthConfig):
    """Mult-VAE hyperparameters; defaults follow the paper."""

    latent_dim: int = Field(200, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    beta_cap: float = Field(0.2, ge=0.0)
    total_anneal_steps: int = Field(200_000, ge=1)
    epochs: int = Field(50, ge=1)
    finetune_epochs: int = Field(10, ge=1, description="epochs when warm-started from yesterday's model")
    batch_size: int = Field(500, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)


def search_space(t: optuna.trial.BaseTrial) -> dict[str, Any]:
    return {
        "hidden_dim": t.suggest_categorical("hidden_dim", [200, 400, 600]),
        "latent_dim": t.suggest_categorical("latent_dim", [64, 128, 200]),
        "dropout": t.suggest_float("dropout", 0.2, 0.7),
        "beta_cap": t.suggest_float("beta_cap", 0.05, 0.5),
        "learning_rate": t.suggest_float("learning_rate", 3e-4, 3e-3, log=True),
        "batch_size": t.suggest_categorical("batch_size", [100, 250, 500]),
    }


SPEC = ModelSpec(
    name="mult_vae",
    implementation="genrec_core.models.mult_vae.model:MultVAE",
    config_class=MultVAEConfig,
    fine_tunable=True,
    iterative=True,
    search_space=search_space,
    summary="Mult-VAE: multinomial likelihood, KL annealing to beta_cap",
)
