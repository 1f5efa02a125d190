"""What a model tells the rest of the system about itself, importable without torch.

Each model package's ``__init__`` defines its config class and a `ModelSpec`; the
implementation (torch, scipy) lives in the package's ``model`` module and is imported
only when a model is built or loaded. Settings, the training plan, tuning and the
benchmarks read these specs from the registry instead of keeping lists of their own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import optuna

    from genrec_core.models.base import Recommender

SearchSpace = Callable[["optuna.trial.BaseTrial"], dict[str, Any]]


class ModelConfig(BaseModel):
    """Base of every model's typed, frozen config section."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LinearExpertConfig(ModelConfig):
    """The optional EASE expert of a generative model (genrec_core/models/neural.py)."""

    linear_expert: bool = Field(False, description="multiply in an EASE expert: see genrec_core/models/neural.py")
    expert_l2: float | None = Field(None, gt=0.0, description="the expert's L2; None = chosen on validation (else 500)")
    expert_weight: float | None = Field(
        None, ge=0.0, description="the expert's weight; None = chosen on validation (else 10)"
    )


def _never(config: ModelConfig | None) -> bool:
    return False


def _always(config: ModelConfig | None) -> bool:
    return True


def with_linear_expert(config: ModelConfig | None) -> bool:
    """`needs_item_gram` of a model whose optional linear expert (EASE) is switched by `linear_expert`."""
    return bool(getattr(config, "linear_expert", False))


NEVER, ALWAYS = _never, _always


@dataclass(frozen=True)
class ModelSpec:
    """A model's self-description.

    - `implementation`: ``"package.module:Class"`` of the `Recommender`, imported on demand.
    - `config_class`: its settings section (``[name]``); None for a model without settings.
    - `fine_tunable`: a fit can warm-start from yesterday's artifact on a grown vocabulary.
    - `iterative`: trained in epochs with early stopping on validation (tuning prunes per epoch).
    - `search_space`: Optuna suggestions for the optional search; None = nothing to tune.
    - `needs_item_gram`: whether this config needs the items^2 Gram matrix (EASE, the linear expert).
    """

    name: str
    implementation: str
    config_class: type[ModelConfig] | None = None
    fine_tunable: bool = False
    iterative: bool = False
    search_space: SearchSpace | None = None
    needs_item_gram: Callable[[ModelConfig | None], bool] = NEVER
    summary: str = ""

    def load_class(self) -> type[Recommender]:
        module_name, _, class_name = self.implementation.partition(":")
        cls: type[Recommender] = getattr(importlib.import_module(module_name), class_name)
        return cls

    def default_config(self) -> ModelConfig | None:
        return self.config_class() if self.config_class is not None else None

    def parse_config(self, values: dict[str, Any] | None) -> ModelConfig | None:
        """The typed config from plain JSON values (an artifact's config.json, a tuning result)."""
        if self.config_class is None:
            return None
        return self.config_class.model_validate(values or {})
