"""The closed-form baselines the gate compares a new model with (every registered model whose spec says
`baseline`), fitted on the same days before D with their configured settings."""

from __future__ import annotations

import logging

from genrec_core.config import Settings
from genrec_core.data.interactions import Interactions
from genrec_core.models.base import FitOptions, Recommender
from genrec_core.models.registry import build_model, model_specs

log = logging.getLogger(__name__)


def baseline_names(settings: Settings, n_items: int, ordered: bool = True) -> list[str]:
    """The baselines that fit `n_items` items (the EASE family only up to `ease.max_items`), in registry order;
    the sequential ones only on `ordered` data (an extract with event times)."""
    names = []
    for spec in model_specs():
        if not spec.baseline:
            continue
        if spec.sequential and not ordered:
            log.info("gate baseline %s left out: the extract carries no event times", spec.name)
            continue
        problem = spec.too_many_items(settings.model_section(spec.name), n_items)
        if problem:
            log.info("gate baseline %s left out: %s", spec.name, problem)
            continue
        names.append(spec.name)
    return names


def fit_baselines(settings: Settings, train: Interactions, options: FitOptions) -> dict[str, Recommender]:
    """Each baseline that fits, fitted on `train`."""
    return {
        name: build_model(name, settings.model_section(name)).fit(train, options)
        for name in baseline_names(settings, train.n_items, train.order is not None)
    }
