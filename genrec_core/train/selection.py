"""Choosing the served model (`model = "auto"`): every candidate on the same validation day, one winner.

On a full retrain for D, each candidate is fitted on the window's days before D-1 and judged on
day D-1 (day D stays unseen for the gate, as tuning does). Neural candidates early-stop on D-1;
a generative model and its `+ease` variant share one trained network (the expert is fitted after
the network and does not change it), so the pair costs one training. What the validation chose
(the best epoch, the expert's L2 and weight) is fixed in the winner's config, so the model trained
on all days before D repeats the winning recipe without a validation set.

Candidates run cheapest first (closed form, then neural, each in registry order) inside one
wall-clock budget: a candidate still training when it ends, or one that fails, is recorded and
skipped; the selection fails only when every candidate does. The winner is the best on the metric;
a tie goes to the earlier candidate, so the same data, settings and seed pick the same winner.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from genrec_core.config import Settings
from genrec_core.data.interactions import Interactions
from genrec_core.errors import TrainingError
from genrec_core.models.base import FitOptions, Recommender, Validation
from genrec_core.models.registry import EXPERT_SUFFIX, default_candidates, has_linear_expert, variant, variant_names
from genrec_core.models.spec import ModelConfig, ModelSpec
from genrec_core.ranking.metrics import evaluate
from genrec_core.ranking.topk import chunk_rows

log = logging.getLogger(__name__)

SELECTION_FILE = "selection.json"
OK, FAILED, OUT_OF_BUDGET, NOT_STARTED = "ok", "failed", "out_of_budget", "not_started"


class BudgetSpent(Exception):
    """Raised from a neural candidate's epoch callback when the selection's wall clock has run out."""


@dataclass(frozen=True)
class Candidate:
    """A variant to try: its name (`rec_vae+ease`), the registered model and the config it starts from."""

    name: str
    spec: ModelSpec
    config: ModelConfig | None

    @property
    def neural(self) -> bool:
        return self.spec.iterative


@dataclass
class Outcome:
    """What one candidate did on the validation day."""

    name: str
    status: str  # ok | failed | out_of_budget | not_started
    metrics: dict[str, Any] = field(default_factory=dict)
    score: float | None = None  # the selection metric at k
    train_seconds: float | None = None  # fitting, including early-stopping validation
    best_epoch: int | None = None
    config: dict[str, Any] | None = None  # the winning recipe: what validation chose, fixed
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SelectionResult:
    """Every candidate's outcome and the winner (selection.json beside the served model)."""

    winner: str
    model: str  # the registered model behind the winner
    config: dict[str, Any] | None  # the winner's config with what validation chose fixed
    metric: str  # e.g. "ndcg@10"
    validation_day: str
    candidates: list[Outcome]
    skipped: dict[str, str]  # variants left out before fitting (too many items for EASE), with the reason
    seconds: float
    reason: str = ""  # why the winner was chosen without judging (no validation day)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["candidates"] = [c.to_json() for c in self.candidates]
        return out

    def summary(self) -> dict[str, Any]:
        """The short form for the run record: winner, metric and each candidate's score, time and status."""
        return {
            "winner": self.winner,
            "metric": self.metric,
            "validation_day": self.validation_day,
            "candidates": [
                {
                    "name": c.name,
                    "status": c.status,
                    "score": c.score,
                    "train_seconds": c.train_seconds,
                    **({"detail": c.detail} if c.detail else {}),
                }
                for c in self.candidates
            ],
            "seconds": self.seconds,
            **({"reason": self.reason} if self.reason else {}),
        }


def candidates(settings: Settings, n_items: int, ordered: bool = True) -> tuple[list[Candidate], dict[str, str]]:
    """The candidates to try, cheapest first, and those left out with the reason (a sequential model when the
    data carry no time order)."""
    names = settings.selection.candidates or default_candidates()
    chosen, skipped = [], {}
    for name in names:
        base = name.removesuffix(EXPERT_SUFFIX)
        spec, config = variant(name, settings.model_section(base))
        problem = spec.too_many_items(config, n_items)
        if spec.sequential and not ordered:
            problem = "the extract carries no event times (written before genrec 0.6: rerun it)"
        if problem:
            skipped[name] = problem
        else:
            chosen.append(Candidate(name, spec, config))
    order = {name: i for i, name in enumerate(variant_names())}
    chosen.sort(key=lambda c: (c.neural, order[c.name]))
    return chosen, skipped


def fallback(settings: Settings, n_items: int) -> Candidate:
    """The model served when nothing can be judged: the first of `selection.fallback` that fits."""
    for name in settings.selection.fallback:
        spec, config = variant(name, settings.model_section(name.removesuffix(EXPERT_SUFFIX)))
        if spec.too_many_items(config, n_items) is None:
            return Candidate(name, spec, config)
    raise TrainingError(
        f"none of selection.fallback {list(settings.selection.fallback)} fits {n_items} items; add 'popularity'"
    )


def select(
    settings: Settings,
    fit: Interactions,
    validation: Interactions,
    validation_day: str,
    options: FitOptions,
    checkpoint_dir: str | None = None,
) -> SelectionResult:
    """Fit every candidate on `fit`, judge it on `validation` (day D-1), return every outcome and the winner."""
    started = time.perf_counter()
    metric = f"{settings.selection.metric}@{settings.k}"
    pool, skipped = candidates(settings, fit.n_items, fit.order is not None)
    for name, why in skipped.items():
        log.info("selection: %s left out: %s", name, why)
    if not pool:
        raise TrainingError(f"selection: no candidate fits the catalogue ({skipped})")
    deadline = started + settings.selection.budget_minutes * 60
    outcomes: dict[str, Outcome] = {}
    trained_networks: set[str] = set()
    for candidate in pool:
        if candidate.name in outcomes:  # measured with its network's other variant
            continue
        if candidate.neural and candidate.spec.name in trained_networks:
            continue
        if time.perf_counter() >= deadline:
            outcomes[candidate.name] = Outcome(
                candidate.name, NOT_STARTED, detail=f"the {settings.selection.budget_minutes:g} min budget was spent"
            )
            log.warning("selection: %s not started: the budget was spent", candidate.name)
            continue
        variants = _variants_sharing(candidate, pool) if candidate.neural else [candidate]
        if candidate.neural:
            trained_networks.add(candidate.spec.name)
        for outcome in _try(variants, fit, validation, metric, settings, options, deadline, checkpoint_dir):
            outcomes[outcome.name] = outcome
            _log_outcome(outcome, metric)
    ordered = [outcomes[c.name] for c in pool]
    finished = [o for o in ordered if o.status == OK and o.score is not None]
    if not finished:
        raise TrainingError(
            "selection: every candidate failed or ran out of budget: "
            + "; ".join(f"{o.name}: {o.status} {o.detail}".strip() for o in ordered)
        )
    best = max(finished, key=lambda o: o.score or 0.0)  # max keeps the first of equal scores
    winner = next(c for c in pool if c.name == best.name)
    seconds = time.perf_counter() - started
    log.info("selection: %s wins with %s %.4f on %s (%.0f s)", best.name, metric, best.score, validation_day, seconds)
    return SelectionResult(
        best.name, winner.spec.name, best.config, metric, validation_day, ordered, skipped, round(seconds, 2)
    )


def unjudged(settings: Settings, n_items: int, validation_day: str, reason: str) -> SelectionResult:
    """The result when there is no validation day to judge on: the fallback model, with the reason."""
    chosen = fallback(settings, n_items)
    log.warning("selection: serving %s without judging: %s", chosen.name, reason)
    config = chosen.config.model_dump(mode="json") if chosen.config is not None else None
    return SelectionResult(
        chosen.name,
        chosen.spec.name,
        config,
        f"{settings.selection.metric}@{settings.k}",
        validation_day,
        [],
        {},
        0.0,
        reason=reason,
    )


def _variants_sharing(candidate: Candidate, pool: list[Candidate]) -> list[Candidate]:
    """The candidates that train the same network as `candidate` (the plain model and its `+ease`)."""
    return [c for c in pool if c.neural and c.spec.name == candidate.spec.name]


def _try(
    variants: list[Candidate],
    fit: Interactions,
    validation: Interactions,
    metric: str,
    settings: Settings,
    options: FitOptions,
    deadline: float,
    checkpoint_dir: str | None,
) -> list[Outcome]:
    """Fit once and judge each variant; a failure or the deadline is recorded, never raised."""
    first = variants[0]
    with_expert = any(v.name.endswith(EXPERT_SUFFIX) for v in variants)
    started = time.perf_counter()
    try:
        model = _fit(first, with_expert, fit, validation, settings, options, deadline, checkpoint_dir)
    except BudgetSpent:
        detail = f"still training when the {settings.selection.budget_minutes:g} min budget ended"
        return [Outcome(v.name, OUT_OF_BUDGET, train_seconds=_since(started), detail=detail) for v in variants]
    except Exception as exc:  # a broken candidate must not end the night: record it, try the others
        log.warning("selection: %s failed:\n%s", first.name, traceback.format_exc())
        detail = f"{type(exc).__name__}: {exc}"[:500]
        return [Outcome(v.name, FAILED, train_seconds=_since(started), detail=detail) for v in variants]
    seconds = _since(started)
    outcomes = []
    chunk = chunk_rows(fit.n_items, settings.score.chunk_size, settings.score.chunk_budget_mb)
    for candidate in variants:
        scored = _as_variant(model, candidate)
        metrics = evaluate(scored, scored.history_of(fit), validation.matrix, settings.k, chunk)
        outcomes.append(
            Outcome(
                candidate.name,
                OK,
                metrics=metrics,
                score=metrics.get(metric),
                train_seconds=seconds,
                best_epoch=getattr(model, "best_epoch", None) if candidate.neural else None,
                config=_recipe(scored, candidate),
            )
        )
    return outcomes


def _fit(
    candidate: Candidate,
    with_expert: bool,
    fit: Interactions,
    validation: Interactions,
    settings: Settings,
    options: FitOptions,
    deadline: float,
    checkpoint_dir: str | None,
) -> Recommender:
    config = candidate.config
    if candidate.neural and config is not None:
        changes: dict[str, Any] = {"epochs": settings.selection.max_epochs}
        if has_linear_expert(candidate.spec):
            changes["linear_expert"] = with_expert
        config = type(config).model_validate({**config.model_dump(), **changes})
    cls = candidate.spec.load_class()
    model = cls(config) if config is not None else cls()

    def on_epoch(epoch: int, value: float) -> None:
        if time.perf_counter() >= deadline:
            raise BudgetSpent(f"after epoch {epoch}")

    checks = Validation.between(
        fit,
        validation,
        k=settings.k,
        patience=settings.selection.patience,
        patience_updates=settings.selection.patience_updates,
        max_users=settings.selection.validation_users,
        on_epoch=on_epoch,
    )
    run_options = replace(
        options,
        validation=checks,
        checkpoint_dir=f"{checkpoint_dir}/{candidate.spec.name}" if checkpoint_dir and candidate.neural else None,
    )
    return model.fit(fit, run_options)


def _as_variant(model: Recommender, candidate: Candidate) -> Recommender:
    """The fitted model as `candidate` scores: the plain network of a model fitted with its expert."""
    if candidate.name.endswith(EXPERT_SUFFIX) or getattr(model, "expert", None) is None:
        return model
    plain = copy.copy(model)
    plain.expert = None  # type: ignore[attr-defined]  # NeuralRecommender: lists from the network alone
    plain.config = type(model.config).model_validate(  # type: ignore[attr-defined]
        {**model.config.model_dump(), "linear_expert": False}  # type: ignore[attr-defined]
    )
    return plain


def _recipe(model: Recommender, candidate: Candidate) -> dict[str, Any] | None:
    """The candidate's config with what validation chose fixed: epochs = the best epoch, the expert's L2 and weight."""
    if candidate.config is None:
        return None
    values: dict[str, Any] = model.config_dict()
    if candidate.neural:
        values["epochs"] = max(int(getattr(model, "best_epoch", 0) or 0), 1)
    if values.get("linear_expert"):
        values["expert_l2"] = getattr(model, "expert_l2", None) or values.get("expert_l2")
        values["expert_weight"] = getattr(model, "expert_weight", None)
    return candidate.spec.parse_config(values).model_dump(mode="json")  # type: ignore[union-attr]


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 2)


def _log_outcome(outcome: Outcome, metric: str) -> None:
    if outcome.status == OK:
        epoch = f", best epoch {outcome.best_epoch}" if outcome.best_epoch else ""
        log.info(
            "selection: %-16s %s %.4f in %.1f s%s",
            outcome.name,
            metric,
            outcome.score or 0.0,
            outcome.train_seconds or 0.0,
            epoch,
        )
    else:
        log.warning("selection: %-16s %s %s", outcome.name, outcome.status, outcome.detail)
