"""Fine-tune or retrain: which one a run for D does, and from what.

`finetune` warm-starts from the artifact of D-1 (models/<model>/dt=D-1/), never from
one dated after D, so a backfill of D repeats that night. `auto` fine-tunes unless a
full retrain is due: no usable model of D-1, the last full retrain is `retrain_every_days`
old, the item vocabulary grew by more than `retrain_vocab_growth` since then, or D-1's
model was not published (the gate rejected it: the fine-tuned line fell behind the champion), or the
model's settings changed since D-1's (unless tuning is on: then the line keeps its tuned config until
its next full retrain, which searches again).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from genrec_core import layout
from genrec_core.config import Settings
from genrec_core.data.interactions import Vocabulary
from genrec_core.errors import ConfigError, DataError
from genrec_core.models.base import CONFIG_FILE
from genrec_core.models.registry import model_spec, model_specs
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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fine_tunable() -> tuple[str, ...]:
    """The registered models that can warm-start from yesterday's artifact."""
    return tuple(spec.name for spec in model_specs() if spec.fine_tunable)


def _retrain(run_date: dt.date, n_items: int, reason: str) -> TrainingPlan:
    return TrainingPlan(RETRAIN, reason, None, run_date.isoformat(), n_items)


def _is_prefix(previous: Vocabulary, current: Vocabulary) -> bool:
    return len(previous) <= len(current) and bool((previous.ids == current.ids[: len(previous)]).all())


def _config_of(model_uri: str, storage: Storage) -> Any:
    return storage.read_json(join(model_uri, CONFIG_FILE))["config"]


def _settings_config(settings: Settings) -> Any:
    section = settings.model_section()
    return section.model_dump(mode="json") if section is not None else {}  # JSON values, as config.json holds them


def plan_training(
    settings: Settings, run_date: dt.date, items: Vocabulary, storage: Storage, published_before: bool | None
) -> TrainingPlan:
    """Decide for D. `published_before`: whether D-1's lists were published (None when unknown)."""
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
    problem = None
    if not storage.exists(join(base, PLAN_FILE)):
        problem = f"no {settings.model} model for {previous} at {base}"
    else:
        base_plan = storage.read_json(join(base, PLAN_FILE))
        base_items = Vocabulary.from_table(storage.read_table(join(base, "vocab", "items")))
        if not _is_prefix(base_items, items):
            problem = f"the item vocabulary of {previous} is not a prefix of today's (vocabularies must be append-only)"
    if problem is not None:
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
