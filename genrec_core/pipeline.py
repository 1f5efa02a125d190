"""The nightly stages as plain functions of (settings, run date, what the stage before handed over).

Each stage returns a frozen handoff (genrec_core/handoffs.py). The CLI calls `run_nightly`;
the Airflow DAG calls the stages one per task and passes their `to_xcom()` form. Every stage
is keyed on the run date D and is safe to rerun: it replaces what an earlier attempt for D wrote.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar

from genrec_core import layout
from genrec_core.config import AUTO, Settings
from genrec_core.data.interactions import ExtractedData
from genrec_core.errors import ConfigError, DataError, GateRejected
from genrec_core.handoffs import (
    Champion,
    Evaluated,
    Extracted,
    GateDecision,
    PublishedObjects,
    PublishedPostgres,
    RunRecord,
    Scored,
    StageCost,
    Trained,
)
from genrec_core.meter import metered
from genrec_core.models.base import FitOptions, Recommender, Validation
from genrec_core.storage import Storage, join

log = logging.getLogger(__name__)

P = ParamSpec("P")
H = TypeVar("H", Extracted, Trained, Evaluated, GateDecision, Scored, PublishedObjects, PublishedPostgres)


def _metered(stage: Callable[P, H]) -> Callable[P, H]:
    """Run a stage under the meter; its handoff carries the stage's wall seconds and peak RSS (`cost`)."""

    @functools.wraps(stage)
    def run(*args: P.args, **kwargs: P.kwargs) -> H:
        with metered() as reading:
            result = stage(*args, **kwargs)
        log.info(
            "stage %s: %.1f s, peak RSS %.0f MB (child processes %.0f MB)",
            stage.__name__,
            reading.seconds,
            reading.peak_rss_mb,
            reading.children_peak_rss_mb,
        )
        cost = StageCost(
            round(reading.seconds, 3), round(reading.peak_rss_mb, 1), round(reading.children_peak_rss_mb, 1)
        )
        return replace(result, cost=cost)

    return run


def parse_run_date(value: str | dt.date | dt.datetime) -> dt.date:
    """A run date from 'YYYY-MM-DD', a date, or a datetime (Airflow's data_interval_start)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ConfigError(f"run date {value!r} is not a date; expected YYYY-MM-DD") from None


def _storage(settings: Settings) -> Storage:
    return Storage.from_settings(settings)


def _require_dsn(settings: Settings) -> str:
    if settings.pg_dsn is None:
        raise ConfigError("setting 'pg_dsn' is empty: set GENREC_PG_DSN or the genrec_postgres connection")
    return settings.pg_dsn.get_secret_value()


def _fit_options(settings: Settings) -> FitOptions:
    from genrec_core.models.torch_utils import resolve_device

    return FitOptions(seed=settings.seed, device=resolve_device(settings.device), threads=settings.torch_threads)


# ---- extract ---------------------------------------------------------------------------------


@_metered
def extract(settings: Settings, run_date: dt.date) -> Extracted:
    """Spark extract for D: the extract's URI and its data statistics."""
    from genrec_core.extract.job import run_extract

    result = run_extract(settings, run_date, _storage(settings))
    return Extracted(result.uri, result.stats)


def extract_result(settings: Settings, run_date: dt.date) -> Extracted:
    """What `extract` returns, read back from a finished extract (one that ran elsewhere, e.g. spark-submit)."""
    uri = layout.extract_uri(settings.output_uri, run_date)
    stats_uri = join(uri, "stats.json")
    if not _storage(settings).exists(stats_uri):
        raise DataError(f"the extract for {run_date} did not finish: {stats_uri} does not exist")
    return Extracted(uri, _storage(settings).read_json(stats_uri))


def check_data(settings: Settings, extracted: Extracted) -> None:
    """Data checks the run must pass before training: users and items present, rejected share in bounds,
    and D inside the kept window (an older date's lists would be removed by retention as soon as published)."""
    from genrec_core.publish.object_store import retention_cutoff

    stats = extracted.stats
    problems = []
    cutoff = retention_cutoff(_storage(settings), settings.output_uri, settings.keep_dates)
    if "run_date" in stats and cutoff is not None and dt.date.fromisoformat(stats["run_date"]) < cutoff:
        problems.append(
            f"run date {stats['run_date']} is older than the {settings.keep_dates} published dates "
            f"retention keeps (oldest kept: {cutoff}); raise keep_dates to backfill it"
        )
    if stats.get("users", 0) < 1 or stats.get("items", 0) < 1:
        problems.append(f"window has {stats.get('users', 0)} users and {stats.get('items', 0)} items")
    if stats.get("rejected_share", 0.0) > settings.max_rejected_share:
        problems.append(f"rejected share {stats['rejected_share']:.1%} above {settings.max_rejected_share:.1%}")
    if problems:
        raise DataError("data checks failed: " + "; ".join(problems))


# ---- train -----------------------------------------------------------------------------------


def _checkpoint_dir(settings: Settings, run_date: dt.date) -> str:
    import tempfile
    from pathlib import Path

    configured = settings.train.checkpoint_dir
    root = Path(configured) if configured else Path(tempfile.gettempdir()) / "genrec-checkpoints"
    return str(root / settings.model / f"dt={run_date}")


@_metered
def train(settings: Settings, run_date: dt.date, extracted: Extracted) -> Trained:
    """Fit the served model on the window's days before D (a fine-tune from D-1's model or a full retrain,
    see genrec_core/train/plan.py; with `model = "auto"` a full retrain first selects the model, see
    genrec_core/train/selection.py); save it under models/<model or auto>/dt=D/ with its plan."""
    import shutil

    from genrec_core.models.registry import build_model, load_model, model_spec, variant, variant_of
    from genrec_core.train.plan import FINETUNE, PLAN_FILE, TUNING_FILE, plan_training
    from genrec_core.train.selection import SELECTION_FILE

    storage = _storage(settings)
    data = ExtractedData(extracted.extract_uri, run_date, storage)
    train_set, _, _ = data.split()
    if train_set.matrix.nnz == 0:
        raise DataError(f"no training interactions before {run_date} in the window; need at least two days of data")
    auto = settings.model == AUTO
    previous = run_date - dt.timedelta(days=1)
    published_before = is_published(settings, previous) if auto or model_spec(settings.model).fine_tunable else None
    plan = plan_training(settings, run_date, train_set.items, storage, published_before)
    options = _fit_options(settings)
    checkpoints = _checkpoint_dir(settings, run_date)
    tuning = selection = None
    name, config = settings.model, settings.model_section()
    if plan.select:
        selection = _select(settings, data, run_date, options, checkpoints)
        name = selection["winner"]
        config = variant(name)[0].parse_config(selection["config"])
    elif auto:
        assert plan.base_uri is not None
        selection_file = storage.read_json(join(plan.base_uri, SELECTION_FILE))
        name = selection_file["winner"]
        config = variant(name)[0].parse_config(storage.read_json(join(plan.base_uri, "config.json"))["config"])
    spec = variant(name)[0]
    if plan.mode == FINETUNE:
        assert plan.base_uri is not None
        base = load_model(plan.base_uri, storage, options.device)
        options = replace(options, warm_start=base)
        config = getattr(base, "config", config)  # a fine-tune continues the base's network and config
    elif not auto and settings.tuning.enabled and spec.search_space is not None:
        tuning = _tune(settings, data, run_date, options)
        if "best_config" in tuning:  # else the search was skipped and says why
            config = spec.parse_config(tuning["best_config"])
    model = build_model(spec.name, config)
    options = replace(options, checkpoint_dir=checkpoints)
    log.info("train %s for %s: %s (%s)", name, run_date, plan.mode, plan.reason)
    model.fit(train_set, options)
    uri = layout.model_uri(settings.output_uri, settings.model, run_date)
    storage.delete_dir(uri)
    model.save(uri, storage)
    storage.copy_dir(join(extracted.extract_uri, "vocab"), join(uri, "vocab"))
    if tuning is not None:
        storage.write_json(join(uri, TUNING_FILE), tuning)
    if selection is not None:
        storage.write_json(join(uri, SELECTION_FILE), selection)
    elif auto:
        assert plan.base_uri is not None
        storage.write_json(join(uri, SELECTION_FILE), storage.read_json(join(plan.base_uri, SELECTION_FILE)))
    storage.write_json(join(uri, PLAN_FILE), plan.to_json())  # written last: marks a complete artifact
    shutil.rmtree(checkpoints, ignore_errors=True)
    return Trained(
        uri,
        variant_of(model),
        plan.mode,
        plan.reason,
        model.fit_seconds,
        tuning.get("best_value") if tuning else None,
        selection=_selection_summary(selection) if selection is not None else None,
        selected_on=plan.last_full_retrain if auto else None,
    )


def _select(
    settings: Settings, data: ExtractedData, run_date: dt.date, options: FitOptions, checkpoints: str
) -> dict[str, Any]:
    """The selection before a full retrain of an auto line: candidates fitted on the days before D-1 and
    judged on D-1 (D stays unseen); returns selection.json's content. Without interactions before or on
    D-1 (a window of two days) nothing can be judged and the fallback model is served, saying why."""
    from genrec_core.train.selection import select, unjudged

    validation_day = run_date - dt.timedelta(days=1)
    fit_set, validation_set, _ = data.split(holdout_day=validation_day)
    if fit_set.matrix.nnz == 0 or validation_set.matrix.nnz == 0:
        reason = f"no interactions before or on {validation_day} to judge candidates on"
        result = unjudged(settings, fit_set.n_items, validation_day.isoformat(), reason)
    else:
        result = select(settings, fit_set, validation_set, validation_day.isoformat(), options, f"{checkpoints}/select")
    return {**result.to_json(), "selected_on": run_date.isoformat()}


def _selection_summary(selection: dict[str, Any]) -> dict[str, Any]:
    """What the run record keeps of a selection: the winner and each candidate's score, time and status."""
    keep = ("winner", "metric", "validation_day", "seconds", "reason")
    candidates = [
        {key: c.get(key) for key in ("name", "status", "score", "train_seconds", "best_epoch", "detail")}
        for c in selection.get("candidates", [])
    ]
    return {**{key: selection.get(key) for key in keep}, "candidates": candidates}


def _tune(settings: Settings, data: ExtractedData, run_date: dt.date, options: FitOptions) -> dict[str, Any]:
    """The optional search before a full retrain: fit on days before D-1, judge on D-1 (D stays unseen).
    Returns tuning.json's content; without interactions on D-1 the search is skipped and says why."""
    from genrec_core.train.tuning import TuneBudget, tune

    validation_day = run_date - dt.timedelta(days=1)
    fit_set, validation_set, _ = data.split(holdout_day=validation_day)
    if fit_set.matrix.nnz == 0 or validation_set.matrix.nnz == 0:
        reason = f"no interactions before or on {validation_day} to tune on; using the configured settings"
        log.warning("tuning %s for %s skipped: %s", settings.model, run_date, reason)
        return {"skipped": reason}
    config = settings.tuning
    budget = TuneBudget(config.trials, config.timeout_minutes * 60 if config.timeout_minutes else None, config.patience)
    validation = Validation.between(fit_set, validation_set, k=settings.k)
    try:
        result = tune(settings.model, settings.model_section(), fit_set, validation, budget, options)
    except RuntimeError as exc:  # no trial finished inside the budget: train with the configured settings
        log.warning("tuning %s for %s gave no result: %s", settings.model, run_date, exc)
        return {"skipped": str(exc)}
    return {**result.to_json(), "validation_day": validation_day.isoformat()}


# ---- evaluate and gate -----------------------------------------------------------------------


@_metered
def evaluate(settings: Settings, run_date: dt.date, extracted: Extracted, trained: Trained) -> Evaluated:
    """Hold out day D: metrics@k of the model, the popularity baseline, the closed-form baselines that fit
    (genrec_core/evaluate/baselines.py) and the champion (the model behind the newest date published before D,
    see genrec_core/evaluate/champion.py) on D's new interactions, all fitted on the days before D."""
    from genrec_core.evaluate import champion as champions
    from genrec_core.evaluate.baselines import fit_baselines
    from genrec_core.models.popularity.model import Popularity
    from genrec_core.models.registry import load_model
    from genrec_core.ranking.metrics import evaluate as evaluate_model
    from genrec_core.ranking.topk import chunk_rows

    storage = _storage(settings)
    train_set, holdout, _ = ExtractedData(extracted.extract_uri, run_date, storage).split()
    options = _fit_options(settings)
    chunk = chunk_rows(train_set.n_items, settings.score.chunk_size, settings.score.chunk_budget_mb)

    def metrics_of(model: Recommender) -> dict[str, Any]:
        return evaluate_model(model, model.history_of(train_set), holdout.matrix, settings.k, chunk)

    model = load_model(trained.model_uri, storage, device=options.device)
    champion = None
    manifest = champions.champion(storage, settings.output_uri, run_date)
    if manifest is not None:
        incumbent = champions.champion_model(manifest, storage, train_set.n_items, options.device)
        champion = Champion(manifest.get("model_version"), metrics_of(incumbent))
    baselines = {}
    if settings.gate.compare_baselines:
        baselines = {name: metrics_of(fitted) for name, fitted in fit_baselines(settings, train_set, options).items()}
    return Evaluated(metrics_of(model), metrics_of(Popularity().fit(train_set, options)), champion, baselines=baselines)


@_metered
def gate(settings: Settings, run_date: dt.date, record: RunRecord) -> GateDecision:
    """Champion/challenger gate on the evaluate stage's metrics; raise GateRejected (after recording the
    run as rejected) when it fails."""
    from genrec_core.evaluate.gate import decide

    evaluation, champion = record.evaluated, record.evaluated.champion
    decision = decide(
        f"{settings.gate.metric}@{settings.k}",
        evaluation.model,
        evaluation.popularity,
        champion.metrics if champion else None,
        champion.version if champion else None,
        settings.gate.margin,
        settings.gate.min_users,
        force=settings.force_publish,
        baselines=evaluation.baselines,
    )
    if not decision.passed:
        if settings.pg_dsn is not None:
            from genrec_core.publish.migrations import upgrade
            from genrec_core.publish.postgres import record_rejected

            upgrade(settings.pg_dsn.get_secret_value())
            record_rejected(
                settings.pg_dsn.get_secret_value(),
                run_date,
                record.but(decision=decision).for_postgres(),
                decision.reasons,
            )
        raise GateRejected(
            f"quality gate rejected the run for {run_date}: "
            + "; ".join(decision.reasons)
            + "; nothing was published and the previous lists stay served"
        )
    if decision.forced:
        log.warning("quality gate overridden by force_publish for %s: %s", run_date, "; ".join(decision.reasons))
    return decision


# ---- score -----------------------------------------------------------------------------------


@_metered
def score(settings: Settings, run_date: dt.date, extracted: Extracted, trained: Trained, shard: int = 0) -> Scored:
    """Top-k for every user with history through D in one shard; part files under scored/dt=D/."""
    from genrec_core.models.registry import load_model
    from genrec_core.score.filters import load_item_filter
    from genrec_core.score.job import ScoreRequest, score_shard

    storage = _storage(settings)
    request = ScoreRequest.for_shard(settings, run_date, shard)
    dsn = settings.pg_dsn.get_secret_value() if settings.pg_dsn else None
    item_filter = load_item_filter(storage, settings.score.exclusions_uri, settings.score.allowlist_uri, dsn)
    device = _fit_options(settings).device
    scored_uri = layout.scored_uri(settings.output_uri, run_date)
    started = time.perf_counter()
    if settings.score.engine == "spark":
        from genrec_core.extract.spark import get_spark
        from genrec_core.score.spark import score_with_spark

        markers = score_with_spark(
            get_spark(settings.spark_master, settings.spark_driver_memory, "genrec-score"),
            request,
            extracted.extract_uri,
            trained.model_uri,
            scored_uri,
            item_filter,
            storage.s3_options,
            trained.model,
            device,
        )
        marker = {key: sum(m[key] for m in markers) for key in ("users", "model_users", "fallback_users", "rows")}
        engine = "spark"
    else:
        model = load_model(trained.model_uri, storage, device=device)
        data = ExtractedData(extracted.extract_uri, run_date, storage)
        marker = score_shard(data, model, request, item_filter, scored_uri, storage, trained.model)
        engine = "local"
    return Scored(
        scored_uri,
        marker["users"],
        marker["model_users"],
        marker["fallback_users"],
        marker["rows"],
        request.n_shards,
        engine,
        time.perf_counter() - started,
    )


def shard_plan(settings: Settings) -> list[int]:
    """The shard numbers the score stage runs as: 0..shards-1, or one step for the Spark engine."""
    return [0] if settings.score.engine == "spark" else list(range(settings.score.shards))


# ---- publish ---------------------------------------------------------------------------------


def _staged(settings: Settings, scored: Scored) -> tuple[Storage, list[str]]:
    from genrec_core.score.job import staged_parts

    storage = _storage(settings)
    return storage, staged_parts(storage, scored.scored_uri, settings.score.shards)


@_metered
def publish_object_store(settings: Settings, run_date: dt.date, record: RunRecord) -> PublishedObjects:
    """Replace D's lists in the object store's Delta table (one commit), record and serve D, apply retention."""
    from genrec_core.publish.lake import LISTS, table_uri
    from genrec_core.publish.object_store import apply_object_retention
    from genrec_core.publish.object_store import publish_object_store as publish

    assert record.scored is not None
    storage, parts = _staged(settings, record.scored)
    model_info = {
        "model": record.trained.model,
        "model_uri": record.trained.model_uri,
        "model_version": record.trained.version,
        "run_id": record.run_id or "",
    }
    publication = publish(storage, settings.output_uri, run_date, parts, model_info)
    removed = apply_object_retention(storage, settings.output_uri, settings.keep_dates)
    return PublishedObjects(table_uri(settings.output_uri, LISTS), publication.rows, publication.lists_version, removed)


@_metered
def publish_postgres(settings: Settings, run_date: dt.date, record: RunRecord) -> PublishedPostgres:
    """Swap D's lists into Postgres (migrations applied first); record the run; apply retention."""
    from genrec_core.publish.migrations import upgrade
    from genrec_core.publish.postgres import publish_postgres as publish
    from genrec_core.score.job import iter_tables

    assert record.scored is not None
    dsn = _require_dsn(settings)
    upgrade(dsn)
    storage, parts = _staged(settings, record.scored)
    result = publish(
        dsn,
        run_date,
        iter_tables(storage, parts),
        record.for_postgres(),
        keep_dates=settings.keep_dates,
        workers=settings.publish_workers,
    )
    return PublishedPostgres(result.rows, result.timings, [d.isoformat() for d in result.dropped_dates])


def is_published(settings: Settings, run_date: dt.date) -> bool:
    """Whether D's lists are published (D has a row in the object store's `publications` table)."""
    return run_date in published_records(settings)


def published_record(settings: Settings, run_date: dt.date) -> dict[str, Any]:
    """A published date's record (rows, model, model version, table version); DataError when not published."""
    records = published_records(settings)
    if run_date not in records:
        raise DataError(f"{run_date} is not published in {join(settings.output_uri, 'tables')}")
    return records[run_date]


def published_records(settings: Settings) -> dict[dt.date, dict[str, Any]]:
    from genrec_core.publish.object_store import published

    return published(_storage(settings), settings.output_uri)


def record_run(settings: Settings, record: RunRecord) -> str:
    """Write the run summary to runs/dt=D/summary.json; return its URI."""
    uri = layout.summary_uri(settings.output_uri, dt.date.fromisoformat(record.run_date))
    _storage(settings).write_json(uri, record.summary())
    return uri


# ---- the whole night -------------------------------------------------------------------------


def run_nightly(settings: Settings, run_date: dt.date) -> dict[str, Any]:
    """The whole nightly run in-process: the same calls the DAG makes, in the same order."""
    started_at = dt.datetime.now(dt.UTC).isoformat()  # monitoring only; nothing is keyed on it
    extracted = extract(settings, run_date)
    check_data(settings, extracted)
    trained = train(settings, run_date, extracted)
    evaluated = evaluate(settings, run_date, extracted, trained)
    record = RunRecord.start(run_date, extracted, trained, evaluated, started_at, f"genrec run {run_date}")
    record = record.but(decision=gate(settings, run_date, record))
    scored = Scored.combine([score(settings, run_date, extracted, trained, shard) for shard in shard_plan(settings)])
    record = record.but(scored=scored)
    record = record.but(objects=publish_object_store(settings, run_date, record))
    record = record.but(postgres=publish_postgres(settings, run_date, record))
    summary_uri = record_run(settings, record)
    return {**record.summary(), "summary_uri": summary_uri}
