"""CFGAN (Chae et al., CIKM 2018): its settings section and self-description (no torch here).

Defaults follow the authors' ML-1M setting (their `parameters.py`, also kept in the ECIR 2022 study's
repository under `evaluation-cfgan/conferences/cikm/cfgan/original_source_code/`): item-based, a one-layer
generator of 300 units and a one-layer discriminator of 250, ZR and PM on 90% of the unseen entries,
alpha 0.03, L2 1e-3 on G and 5e-5 on D, batches of 256 (G) and 512 (D), one D pass then one G pass per
epoch. Departures, each measured (README, "Why the defaults are what they are"): learning rates x2
(2e-4 / 1e-4; the authors' 1e-4 / 5e-5 need their 1,500 epochs; at x4 the ML-1M game broke at epoch 345) and
early stopping after `min_epochs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from genrec_core.models.spec import LinearExpertConfig, ModelSpec

if TYPE_CHECKING:
    import optuna


class CFGANConfig(LinearExpertConfig):
    """CFGAN hyperparameters, the ZR + PM variant ("ZP" in the authors' code), user-based."""

    mode: Literal["user", "item"] = Field(
        "item",
        description="user: rows are users' histories (scores any user, new ones too); item: rows are items' "
        "columns over the users (the authors' MovieLens setting; scores users known at fit time)",
    )
    item_mode_max_users: int = Field(200_000, ge=1, description="item mode's network is this many users wide")
    generator_hidden: int = Field(300, ge=1)
    generator_layers: int = Field(1, ge=1, description="hidden layers of G (sigmoid units); its output is linear")
    discriminator_hidden: int = Field(250, ge=1)
    discriminator_layers: int = Field(1, ge=1, description="hidden layers of D (sigmoid units)")
    zr_ratio: float = Field(0.9, ge=0.0, le=1.0, description="share of each user's unseen items pushed to zero (ZR)")
    pm_ratio: float = Field(0.9, ge=0.0, le=1.0, description="share of unseen items D sees generated (PM)")
    zr_weight: float = Field(0.03, ge=0.0, description="alpha: weight of the zero-reconstruction term")
    generator_l2: float = Field(1e-3, ge=0.0, description="L2 on G's weights and biases (x sum of squares / 2)")
    discriminator_l2: float = Field(5e-5, ge=0.0, description="L2 on D's weights and biases")
    generator_learning_rate: float = Field(
        2e-4, gt=0.0, description="the authors': 1e-4 over 1,500 epochs; at 4e-4 the ML-1M game broke at epoch 345"
    )
    discriminator_learning_rate: float = Field(1e-4, gt=0.0, description="the authors': 5e-5")
    generator_batch_size: int = Field(256, ge=1)
    discriminator_batch_size: int = Field(512, ge=1)
    generator_steps: int = Field(1, ge=1, description="passes of G over the users per epoch, after D's")
    discriminator_steps: int = Field(1, ge=1, description="passes of D over the users per epoch")
    epochs: int = Field(1000, ge=1, description="cap; the authors train ML-1M for 1475-1550 epochs at half the rate")
    min_epochs: int = Field(
        600,
        ge=0,
        description="early stopping may not end the fit before this epoch (a GAN's first peak is not its last)",
    )
    finetune_epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=1, description="users per chunk when validating and scoring")


def search_space(t: optuna.trial.BaseTrial) -> dict[str, Any]:
    """The study's tuned ranges (Pérez Maurera et al., ECIR 2022)."""
    return {
        "generator_hidden": t.suggest_int("generator_hidden", 50, 400, log=True),
        "discriminator_hidden": t.suggest_int("discriminator_hidden", 50, 400, log=True),
        "zr_ratio": t.suggest_float("zr_ratio", 0.1, 0.9),
        "pm_ratio": t.suggest_float("pm_ratio", 0.1, 0.9),
        "zr_weight": t.suggest_float("zr_weight", 1e-3, 0.3, log=True),
        "generator_l2": t.suggest_float("generator_l2", 1e-5, 1e-2, log=True),
        "discriminator_l2": t.suggest_float("discriminator_l2", 1e-6, 1e-2, log=True),
        "generator_learning_rate": t.suggest_float("generator_learning_rate", 1e-5, 1e-2, log=True),
        "discriminator_learning_rate": t.suggest_float("discriminator_learning_rate", 1e-5, 1e-2, log=True),
    }


SPEC = ModelSpec(
    name="cfgan",
    implementation="genrec_core.models.cfgan.model:CFGAN",
    config_class=CFGANConfig,
    fine_tunable=True,
    iterative=True,
    search_space=search_space,
    default_candidate=False,
    not_a_default_candidate="it needs hundreds of epochs (300 on ML-100K, about 1,000 on ML-1M) to pass the "
    "closed forms' level, beyond a night's budget on 2 cores; name it in selection.candidates to try it",
    summary="CFGAN: history-conditioned generator and discriminator, ZR + PM negative sampling",
)
