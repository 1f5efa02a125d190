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
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import optuna

    from genrec_core.models.base import Recommender

SearchSpace = Callable[["optuna.trial.BaseTrial"], dict[str, Any]]
Proposal = Literal["popularity", "uniform"]  # what a sampled softmax draws its items from


class ModelConfig(BaseModel):
    """Base of every model's typed, frozen config section."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LinearExpertConfig(ModelConfig):
    """The optional EASE expert of a generative model (genrec_core/models/neural.py)."""

    linear_expert: bool | None = Field(
        None,
        description="multiply in a linear expert (genrec_core/models/neural.py): EASE, or SANSA above "
        "expert_max_items; None or true: on (it measured better on every data set we have), false: off",
    )
    expert_max_items: int = Field(
        30_000, ge=1, description="the most items for EASE's items^2 matrix as the expert; SANSA's sparse factors above"
    )
    expert_l2: float | None = Field(None, gt=0.0, description="the expert's L2; None = chosen on validation (else 500)")
    expert_weight: float | None = Field(
        None, ge=0.0, description="the expert's weight; None = chosen on validation (else 10)"
    )


class SampledSoftmaxConfig(ModelConfig):
    """When a model's decoder trains on a sampled softmax instead of the full one
    (genrec_core/models/sampled_softmax.py); validation and the lists stay exact over every item."""

    sampled_softmax_above: int = Field(
        50_000,
        ge=0,
        description="train with the sampled softmax when the catalogue has more items than this (0: always); "
        "the full softmax at or below it",
    )
    negatives: int = Field(
        8192,
        ge=1,
        description="items drawn per update for the sampled softmax (at 100k items 2,048 left Mult-VAE stalled on "
        "its first plateau; 8,192 matched the full softmax's recall at the same epoch time: bench/README.md)",
    )
    proposal: Proposal = Field("popularity", description="what the items are drawn from: popularity or uniform")

    def samples_softmax(self, n_items: int) -> bool:
        return n_items > self.sampled_softmax_above


class ItemWidthConfig(ModelConfig):
    """A VAE's hidden width, narrower on a large catalogue: its first layer has one `hidden_dim` row per item,
    and with Mult-VAE's mirrored decoder and SparseAdam's two moments a 600-wide network is 14.4 GB at a
    million items, a 200-wide one 4.8 GB (the README's sizing)."""

    hidden_dim: int = Field(600, ge=1)
    narrow_above: int = Field(
        500_000,
        ge=0,
        description="when a fit starts afresh on more items than this, the hidden layers are narrow_hidden_dim "
        "wide instead of hidden_dim (the fitted model's config says the width it has; a fine-tune keeps it)",
    )
    narrow_hidden_dim: int = Field(200, ge=1)

    def for_catalogue(self, n_items: int) -> Self:
        """This config with the width for `n_items` fixed in `hidden_dim` (and kept when the catalogue grows)."""
        if n_items <= self.narrow_above or self.hidden_dim == self.narrow_hidden_dim:
            return self
        return self.model_copy(update={"hidden_dim": self.narrow_hidden_dim})


ItemLimit = tuple[int, str]  # the most items a config can train on, and the setting that says so


def no_item_limit(section: str, config: ModelConfig | None) -> ItemLimit | None:
    return None


def max_items_limit(section: str, config: ModelConfig | None) -> ItemLimit | None:
    """`item_limit` of a model whose config has `max_items` (EASE: the Gram matrix is items^2)."""
    limit = getattr(config, "max_items", None)
    return (int(limit), f"{section}.max_items") if limit is not None else None


@dataclass(frozen=True)
class ModelSpec:
    """A model's self-description.

    - `implementation`: ``"package.module:Class"`` of the `Recommender`, imported on demand.
    - `config_class`: its settings section (``[name]``); None for a model without settings.
    - `fine_tunable`: a fit can warm-start from yesterday's artifact on a grown vocabulary.
    - `iterative`: trained in epochs with early stopping on validation (tuning prunes per epoch).
    - `search_space`: Optuna suggestions for the optional search; None = nothing to tune.
    - `item_limit`: the most items a config can train on and the setting that says so (EASE and an expert that
      is switched on need the items^2 Gram matrix); None when there is no limit.
    - `baseline`: a closed-form reference the quality gate also evaluates on the held-out day; a new
      model more than `gate.margin` below the strongest one that fits the catalogue is rejected.
    - `sequential`: reads the order of a history (`Interactions.order`), not only its items and weights.
    - `default_candidate`: tried by `model = "auto"` unless `selection.candidates` says otherwise; off for a
      model that cannot train in a night's budget on the CPU workers (`not_a_default_candidate` says why).
    """

    name: str
    implementation: str
    config_class: type[ModelConfig] | None = None
    fine_tunable: bool = False
    iterative: bool = False
    search_space: SearchSpace | None = None
    item_limit: Callable[[str, ModelConfig | None], ItemLimit | None] = no_item_limit
    baseline: bool = False
    sequential: bool = False
    default_candidate: bool = True
    not_a_default_candidate: str = ""
    summary: str = ""

    def load_class(self) -> type[Recommender]:
        module_name, _, class_name = self.implementation.partition(":")
        cls: type[Recommender] = getattr(importlib.import_module(module_name), class_name)
        return cls

    def too_many_items(self, config: ModelConfig | None, n_items: int) -> str | None:
        """Why `config` cannot train on `n_items` items, naming the setting; None when it can."""
        limit = self.item_limit(self.name, config)
        if limit is not None and n_items > limit[0]:
            return f"{n_items} items exceed {limit[1]}={limit[0]} (an items x items matrix)"
        return None

    def default_config(self) -> ModelConfig | None:
        return self.config_class() if self.config_class is not None else None

    def parse_config(self, values: dict[str, Any] | None) -> ModelConfig | None:
        """The typed config from plain JSON values (an artifact's config.json, a tuning result)."""
        if self.config_class is None:
            return None
        return self.config_class.model_validate(values or {})
