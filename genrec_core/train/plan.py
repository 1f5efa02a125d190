"""Fine-tune or retrain: which one a run for D does, and from what.

`finetune` warm-starts from the artifact of D-1 (models/<model>/dt=D-1/), never from
one dated after D, so a backfill of D repeats that night. `auto` fine-tunes unless a
full retrain is due: no usable model of D-1, the last full retrain is `retrain_every_days`
old, the item vocabulary grew by more than `retrain_vocab_growth` since then, or D-1's
model was not published (the gate rejected it: the fine-tuned line fell behind the champion), or the
model's settings changed since D-1's (unless tuning is on: then the line keeps its tuned config until
its next full retrain, which searches again).

With `model = "auto"` the line lives under models/auto/ and a full retrain first selects the served
model (genrec_core/train/selection.py); the nights in between continue the winner: a fine-tune when it
fine-tunes, else a closed-form refit with the winning config. A change of the selection's settings
(its section, k, or a candidate's model section) is a reason to select again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from genrec_core import layout
from genrec_core.config import AUTO, Settings
from genrec_core.data.interactions import Vocabulary
from genrec_core.errors import ConfigError, DataError
from genrec_core.models.base import CONFIG_FILE
from genrec_core.models.registry import EXPERT_SUFFIX, default_candidates, model_spec, model_specs
from genrec_core.storage import Storage, join

PLAN_FILE = "training.json"
TUNING_FILE = "tuning.json"  # beside a model whose config came from the optional search (genrec_core/train/tuning.py)
FINETUNE, RETRAIN = "finetune", "retrain"


@dataclass(frozen=True)
class TrainingPlan:
    mode: str  # "finetune" | "retrain"
    reason: str
    base_uri: str | None  # the D-1 artifact a fine-tune starts from
    last_full_retrain: str  # ISO date of the full retrain this model line descends from
    items_at_retrain: int  # item vocabulary size at that retrain
    select: bool = False  # auto lines: choose the served model on D-1 before training
    selection_settings: str | None = None  # auto lines: digest of the settings the selection was made with

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fine_tunable() -> tuple[str, ...]:
    """The registered models that can warm-start from yesterday's artifact."""
    return tuple(spec.name for spec in model_specs() if spec.fine_tunable)


def _retrain(run_date: dt.date, n_items: int, reason: str) -> TrainingPlan:
    return TrainingPlan(RETRAIN, reason, None, run_date.isoformat(), n_items)


def selection_settings(settings: Settings) -> str:
    """A digest of every setting a selection depends on: [selection], k, seed and each candidate's section."""
    models = sorted(
        {name.removesuffix(EXPERT_SUFFIX) for name in settings.selection.candidates or default_candidates()}
    )
    sections = {}
    for name in models:
        section = settings.model_section(name)
        sections[name] = section.model_dump(mode="json") if section is not None else None
    values = {"selection": settings.selection.model_dump(mode="json"), "k": settings.k, "seed": settings.seed}
    text = json.dumps({**values, "models": sections}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _select(settings: Settings, run_date: dt.date, n_items: int, reason: str) -> TrainingPlan:
    return TrainingPlan(
        RETRAIN,
        reason,
        None,
        run_date.isoformat(),
        n_items,
        select=True,
        selection_settings=selection_settings(settings),
    )


def _is_prefix(previous: Vocabulary, current: Vocabulary) -> bool:
    return len(previous) <= len(current) and bool((previous.ids == current.ids[: len(previous)]).all())


def _base_plan(base: str, items: Vocabulary, storage: Storage, missing: str) -> tuple[dict[str, Any] | None, str]:
    """The plan of D-1's artifact at `base` when it is complete and its items are a prefix of today's;
    else None and the problem (`missing` when there is no complete artifact)."""
    if not storage.exists(join(base, PLAN_FILE)):
        return None, missing
    base_items = Vocabulary.from_table(storage.read_table(join(base, "vocab", "items")))
    if not _is_prefix(base_items, items):
        day = layout.run_date_of_uri(base)
        return None, f"the item vocabulary of {day} is not a prefix of today's (vocabularies must be append-only)"
    plan: dict[str, Any] = storage.read_json(join(base, PLAN_FILE))
    return plan, ""


def _config_of(model_uri: str, storage: Storage) -> Any:
    return storage.read_json(join(model_uri, CONFIG_FILE))["config"]


def _settings_config(settings: Settings) -> Any:
    section = settings.model_section()
    return section.model_dump(mode="json") if section is not None else {}  # JSON values, as config.json holds them


def plan_training(
    settings: Settings, run_date: dt.date, items: Vocabulary, storage: Storage, published_before: bool | None
) -> TrainingPlan:
    """Decide for D. `published_before`: whether D-1's lists were published (None when unknown)."""
    if settings.model == AUTO:
        return _plan_auto(settings, run_date, items, storage, published_before)
    mode = settings.train.mode
    n_items = len(items)
    if mode == RETRAIN:
        return _retrain(run_date, n_items, "retrain requested")
    if not model_spec(settings.model).fine_tunable:
        if mode == FINETUNE:
            raise ConfigError(
                f"setting 'train.mode': {settings.model} is fitted in closed form and has no "
                f"fine-tune; use 'retrain' or 'auto' (fine-tunable: {', '.join(fine_tunable())})"
            )
        return _retrain(run_date, n_items, f"{settings.model} is fitted in closed form")
    previous = run_date - dt.timedelta(days=1)
    base = layout.model_uri(settings.output_uri, settings.model, previous)
    base_plan, problem = _base_plan(base, items, storage, f"no {settings.model} model for {previous} at {base}")
    if base_plan is None:
        if mode == FINETUNE:
            raise DataError(f"cannot fine-tune for {run_date}: {problem}")
        return _retrain(run_date, n_items, problem)
    last = dt.date.fromisoformat(base_plan["last_full_retrain"])
    grown = (n_items - base_plan["items_at_retrain"]) / max(base_plan["items_at_retrain"], 1)
    if mode == "auto":
        if (run_date - last).days >= settings.train.retrain_every_days:
            return _retrain(run_date, n_items, f"last full retrain {last} is {(run_date - last).days} days old")
        if grown > settings.train.retrain_vocab_growth:
            return _retrain(run_date, n_items, f"item vocabulary grew {grown:.1%} since the retrain of {last}")
        if not settings.tuning.enabled and _config_of(base, storage) != _settings_config(settings):
            return _retrain(run_date, n_items, f"the {settings.model} settings changed since the model of {previous}")
        if published_before is False:
            return _retrain(run_date, n_items, f"the model of {previous} was not published (gate rejected it)")
    return TrainingPlan(
        FINETUNE,
        f"warm start from {previous}",
        base,
        base_plan["last_full_retrain"],
        int(base_plan["items_at_retrain"]),
    )


def served_model(model_uri: str, storage: Storage) -> str:
    """The registered model an artifact holds (its config.json)."""
    name: str = storage.read_json(join(model_uri, CONFIG_FILE))["model"]
    return name


def _winner_of(model_uri: str, storage: Storage) -> str | None:
    """The variant the selection behind an auto artifact chose (`rec_vae+ease`), from its selection.json."""
    path = join(model_uri, "selection.json")
    return storage.read_json(path).get("winner") if storage.exists(path) else None


def _plan_auto(
    settings: Settings, run_date: dt.date, items: Vocabulary, storage: Storage, published_before: bool | None
) -> TrainingPlan:
    mode, n_items = settings.train.mode, len(items)
    if mode == RETRAIN:
        return _select(settings, run_date, n_items, "retrain requested: select the served model again")
    previous = run_date - dt.timedelta(days=1)
    base = layout.model_uri(settings.output_uri, AUTO, previous)
    base_plan, problem = _base_plan(base, items, storage, f"no auto-selected model for {previous} at {base}")
    if base_plan is None:
        if mode == FINETUNE:
            raise DataError(f"cannot fine-tune for {run_date}: {problem}")
        return _select(settings, run_date, n_items, problem)
    served = served_model(base, storage)
    fine_tunes = model_spec(served).fine_tunable
    winner = _winner_of(base, storage) or served
    if mode == FINETUNE and not fine_tunes:
        raise ConfigError(
            f"setting 'train.mode': the served model {winner} is fitted in closed form and has no fine-tune; "
            "use 'retrain' or 'auto'"
        )
    last = dt.date.fromisoformat(base_plan["last_full_retrain"])
    grown = (n_items - base_plan["items_at_retrain"]) / max(base_plan["items_at_retrain"], 1)
    if mode == "auto":
        if (run_date - last).days >= settings.train.retrain_every_days:
            return _select(settings, run_date, n_items, f"last selection {last} is {(run_date - last).days} days old")
        if grown > settings.train.retrain_vocab_growth:
            return _select(
                settings, run_date, n_items, f"item vocabulary grew {grown:.1%} since the selection of {last}"
            )
        if base_plan.get("selection_settings") != selection_settings(settings):
            return _select(settings, run_date, n_items, f"the selection settings changed since the model of {previous}")
        if published_before is False:
            return _select(settings, run_date, n_items, f"the model of {previous} was not published (gate rejected it)")
    carried = (base_plan["last_full_retrain"], int(base_plan["items_at_retrain"]))
    if fine_tunes:
        reason = f"warm start from {previous} ({winner}, selected on {last})"
        return TrainingPlan(FINETUNE, reason, base, *carried, selection_settings=base_plan.get("selection_settings"))
    reason = f"{winner} is fitted in closed form: refit with the config selected on {last}"
    return TrainingPlan(RETRAIN, reason, base, *carried, selection_settings=base_plan.get("selection_settings"))
