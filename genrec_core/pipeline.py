"""The nightly steps as plain functions of (settings, run_date, inputs) -> small JSON summaries.

The CLI calls `run_nightly`; the Airflow DAG calls the steps one per task, handing
URIs between them. Every step is keyed on the run date D and is safe to rerun:
it replaces what an earlier attempt for D wrote.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from genrec_core.config import Settings
from genrec_core.contract import partition_name
from genrec_core.data.interactions import ExtractedData
from genrec_core.errors import ConfigError, DataError, GateRejected
from genrec_core.storage import Storage, join

log = logging.getLogger(__name__)


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


def model_uri_for(settings: Settings, run_date: dt.date, model: str | None = None) -> str:
    return join(settings.output_uri, "models", model or settings.model, partition_name(run_date))


def scored_uri_for(settings: Settings, run_date: dt.date) -> str:
    return join(settings.output_uri, "scored", partition_name(run_date))


def _require_dsn(settings: Settings) -> str:
    if settings.pg_dsn is None:
        raise ConfigError("setting 'pg_dsn' is empty: set GENREC_PG_DSN or the genrec_postgres connection")
    return settings.pg_dsn.get_secret_value()


def _fit_options(settings: Settings) -> Any:
    from genrec_core.models.base import FitOptions
    from genrec_core.models.torch_utils import resolve_device

    return FitOptions(seed=settings.seed, device=resolve_device(settings.device), threads=settings.torch_threads)


def extract(settings: Settings, run_date: dt.date) -> dict[str, Any]:
    """Spark extract for D; returns the extract URI and its data statistics."""
    from genrec_core.extract.job import run_extract

    result = run_extract(settings, run_date, _storage(settings))
    return {"extract_uri": result.uri, "stats": result.stats}


def extract_result(settings: Settings, run_date: dt.date) -> dict[str, Any]:
    """What `extract` returns, read back from a finished extract (one that ran elsewhere, e.g. spark-submit)."""
    from genrec_core.extract.job import extract_uri_for

    uri = extract_uri_for(settings.output_uri, run_date)
    stats_uri = join(uri, "stats.json")
    if not _storage(settings).exists(stats_uri):
        raise DataError(f"the extract for {run_date} did not finish: {stats_uri} does not exist")
    return {"extract_uri": uri, "stats": _storage(settings).read_json(stats_uri)}


def check_data(settings: Settings, stats: dict[str, Any]) -> dict[str, Any]:
    """Data checks the run must pass before training: users and items present, rejected share in bounds,
    and D inside the kept window (an older date's lists would be removed by retention as soon as published)."""
    from genrec_core.publish.object_store import retention_cutoff

    problems = []
    cutoff = retention_cutoff(_storage(settings), settings.output_uri, settings.keep_dates)
    if "run_date" in stats and cutoff is not None and dt.date.fromisoformat(stats["run_date"]) < cutoff:
        problems.append(f"run date {stats['run_date']} is older than the {settings.keep_dates} published dates "
                        f"retention keeps (oldest kept: {cutoff}); raise keep_dates to backfill it")
    if stats.get("users", 0) < 1 or stats.get("items", 0) < 1:
        problems.append(f"window has {stats.get('users', 0)} users and {stats.get('items', 0)} items")
    if stats.get("rejected_share", 0.0) > settings.max_rejected_share:
        problems.append(f"rejected share {stats['rejected_share']:.1%} above {settings.max_rejected_share:.1%}")
    if problems:
        raise DataError("data checks failed: " + "; ".join(problems))
    return {"passed": True}


def _checkpoint_dir(settings: Settings, run_date: dt.date) -> str:
    import tempfile
    from pathlib import Path

    root = Path(settings.checkpoint_dir) if settings.checkpoint_dir else Path(tempfile.gettempdir()) / "genrec-checkpoints"
    return str(root / settings.model / partition_name(run_date))


def train(settings: Settings, run_date: dt.date, extract_uri: str) -> dict[str, Any]:
    """Fit the configured model on the window's days before D (a fine-tune from D-1's model or a full
    retrain, see genrec_core/training_plan.py); save it under models/<model>/dt=D/ with its plan."""
    import shutil
    from dataclasses import replace

    from genrec_core.models.base import Recommender
    from genrec_core.models.registry import build_model, model_class
    from genrec_core.training_plan import FINE_TUNABLE, FINETUNE, PLAN_FILE, TUNING_FILE, plan_training
    from genrec_core.tuning import SEARCH_SPACES

    storage = _storage(settings)
    data = ExtractedData(extract_uri, run_date, storage)
    train_set, _, _ = data.split()
    if train_set.matrix.nnz == 0:
        raise DataError(f"no training interactions before {run_date} in the window; need at least two days of data")
    previous = run_date - dt.timedelta(days=1)
    published_before = is_published(settings, previous) if settings.model in FINE_TUNABLE else None
    plan = plan_training(settings, run_date, train_set.items, storage, published_before)
    options = _fit_options(settings)
    tuning = None
    if plan.mode == FINETUNE:
        assert plan.base_uri is not None
        base = Recommender.load(plan.base_uri, storage, options.device)
        options = replace(options, warm_start=base)
        model = model_class(settings.model)(base.config)  # a fine-tune continues the base's network and config
    elif settings.tuning.enabled and settings.model in SEARCH_SPACES:
        tuning = _tune(settings, data, run_date, options)
        config = getattr(settings, settings.model)
        if "best_config" in tuning:  # else the search was skipped and says why
            config = type(config).model_validate(tuning["best_config"])
        model = model_class(settings.model)(config)
    else:
        model = build_model(settings.model, settings)
    checkpoints = _checkpoint_dir(settings, run_date)
    options = replace(options, checkpoint_dir=checkpoints)
    log.info("train %s for %s: %s (%s)", settings.model, run_date, plan.mode, plan.reason)
    model.fit(train_set, options)
    uri = model_uri_for(settings, run_date)
    storage.delete_dir(uri)
    model.save(uri, storage)
    storage.copy_dir(join(extract_uri, "vocab"), join(uri, "vocab"))
    if tuning is not None:
        storage.write_json(join(uri, TUNING_FILE), tuning)
    storage.write_json(join(uri, PLAN_FILE), plan.to_json())  # written last: marks a complete artifact
    shutil.rmtree(checkpoints, ignore_errors=True)
    return {"model_uri": uri, "model": settings.model, "fit_seconds": model.fit_seconds, "mode": plan.mode,
            "reason": plan.reason, "tuned": tuning.get("best_value") if tuning else None}


def _tune(settings: Settings, data: ExtractedData, run_date: dt.date, options: Any) -> dict[str, Any]:
    """The optional search before a full retrain: fit on days before D-1, judge on D-1 (D stays unseen).
    Returns tuning.json's content; without interactions on D-1 the search is skipped and says why."""
    from genrec_core.models.base import Validation
    from genrec_core.tuning import TuneBudget, tune

    validation_day = run_date - dt.timedelta(days=1)
    fit_set, validation_set, _ = data.split(holdout_day=validation_day)
    if fit_set.matrix.nnz == 0 or validation_set.matrix.nnz == 0:
        reason = f"no interactions before or on {validation_day} to tune on; using the configured settings"
        log.warning("tuning %s for %s skipped: %s", settings.model, run_date, reason)
        return {"skipped": reason}
    config = settings.tuning
    budget = TuneBudget(config.trials, config.timeout_minutes * 60 if config.timeout_minutes else None,
                        config.patience)
    validation = Validation(fit_set.matrix, validation_set.matrix, k=settings.k)
    try:
        result = tune(settings.model, getattr(settings, settings.model), fit_set, validation, budget, options)
    except RuntimeError as exc:  # no trial finished inside the budget: train with the configured settings
        log.warning("tuning %s for %s gave no result: %s", settings.model, run_date, exc)
        return {"skipped": str(exc)}
    return {**result.to_json(), "validation_day": validation_day.isoformat()}


def evaluate(settings: Settings, run_date: dt.date, extract_uri: str, model_uri: str) -> dict[str, Any]:
    """Hold out day D: metrics@k of the model, the popularity baseline and the champion (the model
    behind the newest date published before D, see genrec_core/gate.py) on D's new interactions."""
    from genrec_core import gate as quality_gate
    from genrec_core.evaluate import evaluate as evaluate_model
    from genrec_core.models.base import Recommender
    from genrec_core.models.popularity import Popularity
    from genrec_core.score import chunk_rows

    storage = _storage(settings)
    train_set, holdout, _ = ExtractedData(extract_uri, run_date, storage).split()
    options = _fit_options(settings)
    model = Recommender.load(model_uri, storage, device=options.device)
    chunk = chunk_rows(train_set.n_items, settings.score_chunk_size, settings.score_chunk_budget_mb)
    metrics = evaluate_model(model, train_set.matrix, holdout.matrix, settings.k, chunk)
    baseline = Popularity().fit(train_set, options)
    baseline_metrics = evaluate_model(baseline, train_set.matrix, holdout.matrix, settings.k, chunk)
    champion = None
    manifest = quality_gate.champion(storage, settings.output_uri, run_date)
    if manifest is not None:
        incumbent = quality_gate.champion_model(manifest, storage, train_set.n_items, options.device)
        champion = {"version": manifest.get("model_version"),
                    "metrics": evaluate_model(incumbent, train_set.matrix, holdout.matrix, settings.k, chunk)}
    return {"model": metrics, "popularity": baseline_metrics, "champion": champion}


def gate(settings: Settings, run_date: dt.date, evaluation: dict[str, Any],
         run_record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Champion/challenger gate on `evaluate`'s metrics; raise GateRejected (after recording the run as
    rejected) when it fails."""
    from genrec_core import gate as quality_gate

    champion = evaluation.get("champion")
    champion_metrics = champion["metrics"] if champion else None
    decision = quality_gate.decide(f"{settings.gate.metric}@{settings.k}", evaluation["model"],
                                   evaluation["popularity"], champion_metrics,
                                   champion["version"] if champion else None, settings.gate.margin,
                                   settings.gate.min_users, force=settings.force_publish)
    result = {**decision.to_dict(), "champion_metrics": champion_metrics}
    if not decision.passed:
        if settings.pg_dsn is not None and run_record is not None:
            from genrec_core.publish.migrations import upgrade
            from genrec_core.publish.postgres import record_rejected

            upgrade(settings.pg_dsn.get_secret_value())
            record_rejected(settings.pg_dsn.get_secret_value(), run_date,
                            {**run_record, "metrics": {**evaluation["model"], "gate": result}}, decision.reasons)
        raise GateRejected(f"quality gate rejected the run for {run_date}: " + "; ".join(decision.reasons)
                           + "; nothing was published and the previous lists stay served")
    if decision.forced:
        log.warning("quality gate overridden by force_publish for %s: %s", run_date, "; ".join(decision.reasons))
    return result


def score(settings: Settings, run_date: dt.date, extract_uri: str, model_uri: str, shard: int = 0,
          n_shards: int | None = None) -> dict[str, Any]:
    """Top-k for every user with history through D in one shard; part files under scored/dt=D/."""
    from genrec_core.filters import load_item_filter
    from genrec_core.models.base import Recommender
    from genrec_core.score_job import ScoreRequest, score_shard

    storage = _storage(settings)
    request = ScoreRequest(run_date, settings.k, settings.score_chunk_size, settings.min_history,
                           settings.fallback_days, shard, n_shards or settings.score_shards,
                           settings.score_block_users, settings.score_chunk_budget_mb)
    dsn = settings.pg_dsn.get_secret_value() if settings.pg_dsn else None
    item_filter = load_item_filter(storage, settings.exclusions_uri, settings.allowlist_uri, dsn)
    device = _fit_options(settings).device
    started = time.perf_counter()
    if settings.score_engine == "spark":
        from genrec_core.extract.spark import get_spark
        from genrec_core.score_spark import score_with_spark

        markers = score_with_spark(get_spark(settings.spark_master, settings.spark_driver_memory, "genrec-score"),
                                   request, extract_uri, model_uri, scored_uri_for(settings, run_date), item_filter,
                                   storage.s3_options, settings.model, device)
        marker = {key: sum(m[key] for m in markers) for key in ("users", "model_users", "fallback_users", "rows")}
        marker.update({"n_shards": request.n_shards, "engine": "spark"})
    else:
        model = Recommender.load(model_uri, storage, device=device)
        data = ExtractedData(extract_uri, run_date, storage)
        marker = score_shard(data, model, request, item_filter, scored_uri_for(settings, run_date), storage,
                             settings.model)
    return {"scored_uri": scored_uri_for(settings, run_date), **marker, "seconds": time.perf_counter() - started}


def shard_plan(settings: Settings) -> list[int]:
    """The shard numbers the score step runs as: 0..score_shards-1, or one step for the Spark engine."""
    return [0] if settings.score_engine == "spark" else list(range(settings.score_shards))


def _staged(settings: Settings, scored_uri: str) -> tuple[Storage, list[str]]:
    from genrec_core.score_job import staged_parts

    storage = _storage(settings)
    return storage, staged_parts(storage, scored_uri, settings.score_shards)


def publish_postgres(settings: Settings, run_date: dt.date, scored_uri: str, record: dict[str, Any]) -> dict[str, Any]:
    """Swap D's lists into Postgres (migrations applied first); record the run; apply retention."""
    from genrec_core.publish.migrations import upgrade
    from genrec_core.publish.postgres import publish_postgres as publish

    from genrec_core.score_job import iter_tables

    dsn = _require_dsn(settings)
    upgrade(dsn)
    storage, parts = _staged(settings, scored_uri)
    result = publish(dsn, run_date, iter_tables(storage, parts), record,
                     keep_dates=settings.keep_dates, workers=settings.publish_workers)
    return {"rows_published": result.rows, "timings": result.timings,
            "dropped_dates": [d.isoformat() for d in result.dropped_dates]}


def publish_object_store(settings: Settings, run_date: dt.date, scored_uri: str,
                         model_info: dict[str, Any]) -> dict[str, Any]:
    """Copy D's lists under recommendations/dt=D/, write the manifest last, then apply retention."""
    from genrec_core.publish.object_store import MANIFEST, apply_object_retention, recommendations_uri
    from genrec_core.publish.object_store import publish_object_store as publish

    storage, parts = _staged(settings, scored_uri)
    manifest = publish(storage, settings.output_uri, run_date, parts, model_info)
    removed = apply_object_retention(storage, settings.output_uri, settings.keep_dates)
    return {"uri": recommendations_uri(settings.output_uri, run_date), "rows": manifest["rows"],
            "manifest": MANIFEST, "retention_removed": removed}


def is_published(settings: Settings, run_date: dt.date) -> bool:
    """Whether D's lists are published (its S3 manifest exists: what readers trust)."""
    from genrec_core.publish.object_store import MANIFEST, recommendations_uri

    return _storage(settings).exists(join(recommendations_uri(settings.output_uri, run_date), MANIFEST))


def published_manifest(settings: Settings, run_date: dt.date) -> dict[str, Any]:
    """The S3 manifest of a published date (row count, files, model version); DataError when not published."""
    from genrec_core.publish.object_store import MANIFEST, recommendations_uri

    uri = join(recommendations_uri(settings.output_uri, run_date), MANIFEST)
    storage = _storage(settings)
    if not storage.exists(uri):
        raise DataError(f"{run_date} is not published: {uri} does not exist")
    return storage.read_json(uri)


def record_run(settings: Settings, run_date: dt.date, summary: dict[str, Any]) -> str:
    """Write the run summary to runs/dt=D/summary.json; return its URI."""
    uri = join(settings.output_uri, "runs", partition_name(run_date), "summary.json")
    _storage(settings).write_json(uri, summary)
    return uri


def model_version(trained: dict[str, Any]) -> str:
    """A model's version: its name and the run date of the artifact, e.g. `mult_vae@2026-11-20`."""
    return f"{trained['model']}@{trained['model_uri'].rstrip('/').rsplit('dt=', 1)[-1]}"


def build_summary(run_date: dt.date, settings: Settings, extracted: dict[str, Any], evaluation: dict[str, Any],
                  rows_published: int, uris: dict[str, str]) -> dict[str, Any]:
    """The run's JSON summary (the CLI prints it; the DAG records it)."""
    stats = extracted["stats"]
    return {
        "run_date": run_date.isoformat(),
        "events_read": stats["events_read"],
        "events_rejected": stats["events_rejected"],
        "rejected_by_reason": stats["rejected_by_reason"],
        "users": stats["users"],
        "items": stats["items"],
        "model": settings.model,
        "metrics": evaluation["model"],
        "baseline_metrics": {"popularity": evaluation["popularity"]},
        "rows_published": rows_published,
        "uris": uris,
    }


def run_nightly(settings: Settings, run_date: dt.date) -> dict[str, Any]:
    """The whole nightly run in-process: the same calls the DAG makes, in the same order."""
    started_at = dt.datetime.now(dt.timezone.utc).isoformat()  # monitoring only; nothing is keyed on it
    extracted = extract(settings, run_date)
    check_data(settings, extracted["stats"])
    trained = train(settings, run_date, extracted["extract_uri"])
    evaluation = evaluate(settings, run_date, extracted["extract_uri"], trained["model_uri"])
    record = {"model": settings.model, "model_version": model_version(trained), "metrics": evaluation["model"],
              "artifacts": {"extract": extracted["extract_uri"], "model": trained["model_uri"]},
              "started_at": started_at}
    decision = gate(settings, run_date, evaluation, record)
    for shard in shard_plan(settings):
        scored = score(settings, run_date, extracted["extract_uri"], trained["model_uri"], shard)
    uris = {"extract": extracted["extract_uri"], "model": trained["model_uri"], "scored": scored["scored_uri"]}
    s3 = publish_object_store(settings, run_date, scored["scored_uri"],
                              {"model": settings.model, "model_uri": trained["model_uri"],
                               "model_version": model_version(trained)})
    uris["recommendations"] = s3["uri"]
    record = {**record, "metrics": {**evaluation["model"], "gate": decision}, "artifacts": uris}
    published = publish_postgres(settings, run_date, scored["scored_uri"], record)
    summary = build_summary(run_date, settings, extracted, evaluation, published["rows_published"], uris)
    summary["gate"] = decision
    uris["summary"] = record_run(settings, run_date, summary)
    return summary
