"""SASRec (Kang & McAuley, ICDM 2018) trained with full softmax cross-entropy, the "SASRec+" recipe
(Klenitskiy & Vasilev, RecSys 2023): its settings section and self-description (no torch here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from genrec_core.models.spec import ModelSpec, SampledSoftmaxConfig

if TYPE_CHECKING:
    import optuna


class SASRecConfig(SampledSoftmaxConfig):
    """SASRec hyperparameters; defaults are the papers' ML-1M settings (Amazon sets: max_length 50, dropout 0.5)."""

    max_length: int = Field(200, ge=2, description="the latest items of a history the model reads")
    hidden_dim: int = Field(64, ge=1, description="item and position embedding size")
    blocks: int = Field(2, ge=1, description="self-attention blocks")
    heads: int = Field(1, ge=1, description="attention heads (hidden_dim must divide by it)")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    loss: Literal["softmax", "sampled_softmax"] = Field(
        "softmax",
        description="softmax: cross-entropy over every item (SASRec+), sampled above `sampled_softmax_above` items; "
        "sampled_softmax: always estimated from the target and `negatives` items drawn from `proposal`, log-Q "
        "corrected (genrec_core/models/sampled_softmax.py)",
    )
    negatives: int = Field(256, ge=1, description="items drawn per batch for the sampled softmax")
    epochs: int = Field(200, ge=1)
    finetune_epochs: int = Field(5, ge=1, description="epochs when warm-started from yesterday's model")
    batch_size: int = Field(128, ge=1, description="users per update")
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)


def search_space(t: optuna.trial.BaseTrial) -> dict[str, Any]:
    return {
        "hidden_dim": t.suggest_categorical("hidden_dim", [32, 64, 128]),
        "blocks": t.suggest_int("blocks", 1, 3),
        "dropout": t.suggest_float("dropout", 0.1, 0.6),
        "learning_rate": t.suggest_float("learning_rate", 3e-4, 3e-3, log=True),
    }


SPEC = ModelSpec(
    name="sasrec",
    implementation="genrec_core.models.sasrec.model:SASRec",
    config_class=SASRecConfig,
    fine_tunable=True,
    iterative=True,
    search_space=search_space,
    sequential=True,
    summary="SASRec: causal self-attention over the latest items, next item by full softmax (SASRec+)",
)
