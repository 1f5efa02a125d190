"""Optional hyperparameter search: Optuna's TPE sampler over a small space per model, bounded
by a number of trials and a wall-clock budget, judged on a validation split.

Each trial fits a model on `fit` and scores NDCG@k on `validation` (neural models early-stop
on it, and trials falling behind the median of earlier ones at the same epoch are pruned).
The sampler is seeded, so the same data, budget of trials and seed give the same search;
a timeout that ends the search early is the one source of variation, and it is logged.
The winner of a neural search also fixes the epoch count: the best trial's best epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from genrec_core.data.interactions import Interactions
from genrec_core.models.registry import model_spec, model_specs
from genrec_core.models.spec import ModelConfig
from genrec_core.ranking.metrics import evaluate

if TYPE_CHECKING:
    import optuna

    from genrec_core.models.base import FitOptions, Validation

log = logging.getLogger(__name__)


def tunable() -> tuple[str, ...]:
    """The registered models with a search space."""
    return tuple(spec.name for spec in model_specs() if spec.search_space is not None)


@dataclass(frozen=True)
class TuneBudget:
    trials: int = 20
    timeout_s: float | None = 3600.0
    patience: int = 5  # early stopping of each neural trial, in epochs without a better validation score


@dataclass(frozen=True)
class TuneResult:
    model: str
    best_config: dict[str, Any]  # the full typed config to fit with (search values and, for neural models, epochs)
    best_value: float  # validation NDCG@k of the best trial
    metric: str
    trials: list[dict[str, Any]]  # number, state, params, value, best_epoch, seconds
    seconds: float
    stopped_by_timeout: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def tune(
    name: str,
    base_config: ModelConfig | None,
    fit: Interactions,
    validation: Validation,
    budget: TuneBudget,
    options: FitOptions,
) -> TuneResult:
    """Search `name`'s space around `base_config`; raise ValueError for a model with nothing to tune."""
    import optuna

    spec = model_spec(name)
    space = spec.search_space
    if space is None or base_config is None:
        raise ValueError(f"model {name!r} has no hyperparameters to tune; tunable: {sorted(tunable())}")
    if budget.trials < 1:
        raise ValueError(f"the tuning budget needs at least one trial, got {budget.trials}")
    cls = spec.load_class()
    neural = spec.iterative
    metric = f"ndcg@{validation.k}"
    best_epochs: dict[int, int] = {}

    def objective(trial: optuna.Trial) -> float:
        config = type(base_config).model_validate({**base_config.model_dump(), **space(trial)})
        if not neural:
            model = cls(config).fit(fit, options)
            return float(evaluate(model, validation.history, validation.targets, validation.k)[metric] or 0.0)

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation {metric} {value:.4f} at epoch {epoch}")

        model = cls(config).fit(
            fit, replace(options, validation=replace(validation, patience=budget.patience, on_epoch=report))
        )
        best_epochs[trial.number] = int(getattr(model, "best_epoch", 0))
        return max(entry["val_ndcg"] for entry in model.training_log)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=options.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5),
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=budget.trials, timeout=budget.timeout_s, gc_after_trial=True)
    seconds = time.perf_counter() - started
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(
            f"tuning {name}: no trial completed within the budget ({len(study.trials)} pruned or failed)"
        )
    best = study.best_trial
    best_config = {**base_config.model_dump(), **space(optuna.trial.FixedTrial(best.params))}
    if neural:
        best_config["epochs"] = max(best_epochs[best.number], 1)
    stopped = len(study.trials) < budget.trials
    if stopped:
        log.warning(
            "tuning %s: the %s s budget ended the search after %d of %d trials",
            name,
            budget.timeout_s,
            len(study.trials),
            budget.trials,
        )
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "params": t.params,
            "value": t.value,
            "best_epoch": best_epochs.get(t.number),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None,
        }
        for t in study.trials
    ]
    log.info(
        "tuning %s: best %s %.4f after %d trials (%.0f s): %s",
        name,
        metric,
        best.value,
        len(study.trials),
        seconds,
        best.params,
    )
    assert best.value is not None
    return TuneResult(
        name,
        type(base_config).model_validate(best_config).model_dump(mode="json"),
        float(best.value),
        metric,
        trials,
        seconds,
        stopped,
    )
