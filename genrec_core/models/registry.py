"""The registered models: one line per model package, each exporting its `SPEC`.

Adding a model = its package (``__init__`` with the config and spec, ``model`` with the
implementation) + one line here + a test class inheriting the shared contract tests.
This module imports only the light package ``__init__`` files (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from genrec_core.models.spec import ModelConfig, ModelSpec

if TYPE_CHECKING:
    from genrec_core.models.base import Recommender
    from genrec_core.storage import Storage

MODEL_PACKAGES: list[str] = [
    "genrec_core.models.mult_vae",
    "genrec_core.models.rec_vae",
    "genrec_core.models.cfgan",
    "genrec_core.models.sasrec",
    "genrec_core.models.ease",
    "genrec_core.models.sansa",
    "genrec_core.models.item_knn",
    "genrec_core.models.transitions",
    "genrec_core.models.popularity",
]


def model_specs() -> tuple[ModelSpec, ...]:
    """Every registered model's spec, in registry order."""
    specs = []
    for package in MODEL_PACKAGES:
        spec = getattr(importlib.import_module(package), "SPEC", None)
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"model package {package} has no SPEC (a genrec_core.models.spec.ModelSpec)")
        specs.append(spec)
    return tuple(specs)


def model_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in model_specs())


def model_spec(name: str) -> ModelSpec:
    for spec in model_specs():
        if spec.name == name:
            return spec
    raise ValueError(f"unknown model {name!r}; expected one of {sorted(model_names())}")


EXPERT_SUFFIX = "+ease"  # `<model>+ease`: a generative model with its linear expert on (genrec_core/models/neural.py)


def has_linear_expert(spec: ModelSpec) -> bool:
    """Whether the model's config can switch on the EASE expert (`linear_expert`)."""
    return spec.config_class is not None and "linear_expert" in spec.config_class.model_fields


def variant_names() -> tuple[str, ...]:
    """Every registered model, then `<model>+ease` for each that has a linear expert (registry order)."""
    specs = model_specs()
    return (*(s.name for s in specs), *(s.name + EXPERT_SUFFIX for s in specs if has_linear_expert(s)))


def default_candidates() -> tuple[str, ...]:
    """The variants `model = "auto"` tries when `selection.candidates` is not set."""
    return tuple(n for n in variant_names() if model_spec(n.removesuffix(EXPERT_SUFFIX)).default_candidate)


def variant(name: str, base: ModelConfig | None = None) -> tuple[ModelSpec, ModelConfig | None]:
    """The spec and config a variant name stands for: `mult_vae+ease` is mult_vae with `linear_expert` on.
    `base` (default: the model's defaults) is the config the variant starts from."""
    spec = model_spec(name.removesuffix(EXPERT_SUFFIX))
    config = base if base is not None else spec.default_config()
    if name.endswith(EXPERT_SUFFIX):
        if not has_linear_expert(spec) or config is None:
            raise ValueError(f"unknown model {name!r}: {spec.name} has no linear expert")
        config = type(config).model_validate({**config.model_dump(), "linear_expert": True})
    elif config is not None and has_linear_expert(spec):
        config = type(config).model_validate({**config.model_dump(), "linear_expert": False})
    return spec, config


def variant_of(model: Recommender) -> str:
    """The variant name of a fitted or loaded model (`<model>+ease` when it has a linear expert)."""
    return model.name + (EXPERT_SUFFIX if getattr(model, "expert", None) is not None else "")


def model_class(name: str) -> type[Recommender]:
    return model_spec(name).load_class()


def build_model(name: str, config: ModelConfig | None = None) -> Recommender:
    """A fresh, unfitted model; `config` defaults to the model's defaults."""
    spec = model_spec(name)
    cls = spec.load_class()
    chosen = config if config is not None else spec.default_config()
    return cls(chosen) if chosen is not None else cls()


def load_model(uri: str, storage: Storage, device: str = "cpu") -> Recommender:
    """Load any registered model from its artifact directory (``config.json`` + ``weights.pt``).

    Weights load with ``weights_only=True``: a pickled object in the file is refused, never run.
    """
    import io

    import torch

    from genrec_core.errors import DataError
    from genrec_core.models.base import CONFIG_FILE, WEIGHTS_FILE
    from genrec_core.storage import join

    try:
        meta = storage.read_json(join(uri, CONFIG_FILE))
        model = model_class(meta["model"])()
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"model artifact {uri}: {CONFIG_FILE} is not a genrec model config ({exc!r})") from None
    try:
        state = torch.load(
            io.BytesIO(storage.read_bytes(join(uri, WEIGHTS_FILE))), map_location=device, weights_only=True
        )
        model.device = device
        model.load_state(meta["config"], int(meta["n_items"]), state)
    except OSError:  # storage trouble is not a damaged artifact: let it through as it is
        raise
    except Exception as exc:  # truncated, corrupt, foreign or malicious weights
        first_line = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise DataError(
            f"model artifact {uri}: {WEIGHTS_FILE} cannot be loaded as {meta['model']} weights "
            f"({type(exc).__name__}: {first_line})"
        ) from None
    return model
