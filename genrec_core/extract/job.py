"""Spark job: read the window's raw partitions, validate, quarantine, dedupe, weight, index.

Output under ``{output_uri}/extract/dt=D/``:
  daily/day=YYYY-MM-DD/       aggregates (user_idx, item_idx, weight, events, first_ts, last_ts) per day;
                              weight 0 = seen only; first/last_ts: the pair's first and last event (µs, UTC)
  quarantine/day=YYYY-MM-DD/  rejected rows with a `reason` column and the file they came from
  vocab/users, vocab/items    append-only vocabularies (id, idx)
  kcore/users, kcore/items    indices kept by the k-core filter (only when it is on)
  stats.json                  per-day and window counts the quality gate reads

Incremental mode: when the extract of D-1 exists, was made with the same settings and
its raw partitions have not changed since, its per-day outputs are copied and only day
D is read. Every per-day output depends on that day's raw files alone, and ids new on D
get the same indices either way, so the result equals a full recompute.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrec_core import layout
from genrec_core.config import Settings
from genrec_core.contract import CAPPED_USER_DAY, partition_name
from genrec_core.errors import DataError
from genrec_core.extract.read import RawPartition, read_events, source_digest
from genrec_core.extract.transform import (
    aggregate,
    day_totals,
    grow_vocabulary,
    kcore,
    over_cap_keys,
    parquet_rows,
    rejection_reason,
    split_rejects,
    user_days,
)
from genrec_core.extract.window_stats import window_counts
from genrec_core.storage import Storage, join

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractResult:
    uri: str
    stats: dict[str, Any]


def window_days(run_date: dt.date, lookback_days: int) -> list[dt.date]:
    """The days a run for `run_date` reads, oldest first, never after `run_date`."""
    return [run_date - dt.timedelta(days=n) for n in range(lookback_days - 1, -1, -1)]


def previous_extract(output_uri: str, run_date: dt.date, storage: Storage) -> str | None:
    """The newest extract dated strictly before `run_date` that finished (has stats.json)."""
    root = layout.extract_root(output_uri)
    earlier = sorted(
        (name for name in storage.list_dir(root) if name.startswith("dt=") and name[3:] < run_date.isoformat()),
        reverse=True,
    )
    for name in earlier:
        if storage.exists(join(root, name, "stats.json")):
            return join(root, name)
    return None


DAILY_COLUMNS = ("user_idx", "item_idx", "day", "weight", "events", "first_ts", "last_ts")


def fingerprint(settings: Settings) -> str:
    """The settings a day's outputs depend on; an extract made with others cannot be reused."""
    relevant = {
        "events_uri": settings.events_uri,
        "format": settings.extract.format,
        "event_weights": dict(sorted(settings.event_weights.items())),
        "rating_threshold": settings.rating_threshold,
        "max_events_per_user_day": settings.extract.max_events_per_user_day,
        "daily_columns": DAILY_COLUMNS,  # an extract written with other columns is recomputed, not copied
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _listing_digest(storage: Storage, uri: str) -> str:
    files = storage.file_sizes(uri)
    return source_digest(
        [(name, size) for name, size in files.items() if not name.rsplit("/", 1)[-1].startswith(("_", "."))]
    )


def _reusable_days(
    prev_stats: dict[str, Any] | None,
    settings: Settings,
    run_date: dt.date,
    window_start: dt.date,
    digests: dict[str, str],
) -> list[str] | None:
    """Days of the previous extract that can be copied as they are, or None when a full recompute is needed."""
    if prev_stats is None or prev_stats.get("run_date") != (run_date - dt.timedelta(days=1)).isoformat():
        return None
    if prev_stats.get("fingerprint") != fingerprint(settings) or "per_day" not in prev_stats:
        return None
    earlier = {d: digest for d, digest in digests.items() if d != run_date.isoformat()}
    prev_window = {d: s["source_digest"] for d, s in prev_stats["per_day"].items() if d >= window_start.isoformat()}
    if prev_window != earlier:  # a day arrived late, was re-delivered or removed, or the window grew
        return None
    return sorted(earlier)


def run_extract(
    settings: Settings, run_date: dt.date, storage: Storage, *, spark: SparkSession | None = None, full: bool = False
) -> ExtractResult:
    """Run the extract for `run_date`; idempotent (a rerun replaces the date's output).

    `spark` is the session to use (spark-submit passes its own); `full` forces a recompute of the whole window.
    """
    days = window_days(run_date, settings.lookback_days)
    partitions = [(d, join(settings.events_uri, partition_name(d))) for d in days]
    present = [(d, uri) for d, uri in partitions if storage.exists(uri)]
    if not present or present[-1][0] != run_date:
        raise DataError(
            f"no raw events for run date {run_date}: {join(settings.events_uri, partition_name(run_date))} "
            "does not exist; refusing to build recommendations without the day's data"
        )
    digests = {d.isoformat(): _listing_digest(storage, uri) for d, uri in present}
    prev = previous_extract(settings.output_uri, run_date, storage)
    prev_stats = storage.read_json(join(prev, "stats.json")) if prev else None
    reused = (
        None
        if full or not settings.extract.incremental
        else _reusable_days(prev_stats, settings, run_date, days[0], digests)
    )
    to_read = [(run_date, partitions[-1][1])] if reused is not None else present
    out_uri = layout.extract_uri(settings.output_uri, run_date)
    if spark is None:
        from genrec_core.extract.spark import get_spark

        spark = get_spark(settings.spark_master, settings.spark_driver_memory)

    mirror = [uri for _, uri in to_read] + ([join(prev, "vocab")] if prev else [])
    with storage.local_mirror(mirror) as local_paths, storage.local_output(out_uri) as out:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for day in reused or []:
            for table in ("daily", "quarantine"):
                src = join(prev, table, f"day={day}")  # type: ignore[arg-type]
                if storage.exists(src):
                    storage.copy_dir(src, str(out / table / f"day={day}"))
        parts = [RawPartition(d, uri, path) for (d, uri), path in zip(to_read, local_paths)]
        prev_vocab = local_paths[-1] if prev else None
        new_days, window = _extract(spark, parts, prev_vocab, out, settings, run_date)
        per_day = {d: prev_stats["per_day"][d] for d in reused or []}  # type: ignore[index]
        for day, day_stats in new_days.items():
            per_day[day] = {**day_stats, "source_digest": digests[day]}
        stats = _window_stats(per_day, window, settings, run_date)
        stats.update(
            {
                "mode": "incremental" if reused is not None else "full",
                "days_read": [d.isoformat() for d, _ in to_read],
                "window_start": days[0].isoformat(),
                "days_present": [d.isoformat() for d, _ in present],
                "days_missing": [d.isoformat() for d, uri in partitions if (d, uri) not in present],
                "previous_extract": prev,
            }
        )
        (out / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    log.info("extract %s (%s): %s", run_date, stats["mode"], {k: v for k, v in stats.items() if k != "per_day"})
    return ExtractResult(out_uri, stats)


def _window_stats(
    per_day: dict[str, dict[str, Any]], window: dict[str, Any], settings: Settings, run_date: dt.date
) -> dict[str, Any]:
    by_reason: dict[str, int] = {}
    for day_stats in per_day.values():
        for reason, n in day_stats["rejected_by_reason"].items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    total = {
        key: sum(s[key] for s in per_day.values())
        for key in ("events_read", "events_rejected", "duplicates_dropped", "events_capped", "user_days_capped")
    }
    users, items, pairs = window["users"], window["items"], window["pairs"]
    return {
        "run_date": run_date.isoformat(),
        "fingerprint": fingerprint(settings),
        "format": settings.extract.format,
        **total,
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "rejected_share": total["events_rejected"] / total["events_read"] if total["events_read"] else 0.0,
        "users": users,
        "items": items,
        "pairs": pairs,
        "daily_rows": window["daily_rows"],
        "density": pairs / (users * items) if users and items else 0.0,
        "new_users": window["new_users"],
        "new_items": window["new_items"],
        "weighting": {
            "decay_half_life_days": settings.extract.decay_half_life_days,
            "count_weight": settings.extract.count_weight,
        },
        "kcore": window["kcore"],
        "timings": window["timings"],
        "per_day": dict(sorted(per_day.items())),
    }


def _check_rejected_share(
    per_day: dict[str, dict[str, Any]], settings: Settings, run_date: dt.date, quarantine: Path
) -> None:
    """Fail when day D or the days read in this run reject more than the allowed share."""
    limit = settings.max_rejected_share
    scopes = {f"day {run_date}": [per_day[run_date.isoformat()]], "the days read": list(per_day.values())}
    for scope, days in scopes.items():
        read = sum(d["events_read"] for d in days)
        rejected = sum(d["events_rejected"] for d in days)
        share = rejected / read if read else 0.0
        if share > limit:
            reasons: dict[str, int] = {}
            for d in days:
                for reason, n in d["rejected_by_reason"].items():
                    reasons[reason] = reasons.get(reason, 0) + n
            raise DataError(
                f"{rejected} of {read} events ({share:.1%}) rejected in {scope}, above the threshold "
                f"max_rejected_share={limit:.1%}; by reason: {dict(sorted(reasons.items()))}; "
                f"rows are in {quarantine}"
            )


def _extract(
    spark: SparkSession,
    parts: list[RawPartition],
    prev_vocab: Path | None,
    out: Path,
    settings: Settings,
    run_date: dt.date,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Process the raw partitions in `parts`; return (per-day stats of those days, window stats)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    cfg = settings.extract
    watch = _Stopwatch()
    quarantine = out / "quarantine"
    raw = read_events(spark, parts, cfg.format)
    if raw is None:
        raise DataError(
            f"no data files in {[p.uri for p in parts]} (format {cfg.format}); the run date {run_date} needs data"
        )
    checked = raw.withColumn("reason", rejection_reason())
    aggregated = aggregate(checked, settings).persist(StorageLevel.MEMORY_AND_DISK)
    kept = None
    try:
        daily, reject_counts = split_rejects(aggregated)
        rejected: dict[str, dict[str, int]] = {}
        bad_files = set()
        for row in reject_counts.collect():  # the one pass over the raw rows; it fills the cache
            by_reason = rejected.setdefault(row["day"].isoformat(), {})
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + row["rows"]
            bad_files.add(row["source_file"])
        watch.lap("read_validate_aggregate")
        if bad_files:  # read again only the files that hold rejected rows
            _to_quarantine(
                checked.filter(F.col("reason").isNotNull() & F.col("source_file").isin(sorted(bad_files))), quarantine
            )
        watch.lap("quarantine")

        per_user_day = user_days(daily)
        totals = day_totals(per_user_day, cfg.max_events_per_user_day)
        per_day: dict[str, dict[str, Any]] = {}
        for part in parts:
            day = part.day.isoformat()
            by_reason = rejected.get(day, {})
            got = totals.get(day, {"accepted": 0, "events": 0, "capped_rows": 0, "capped_user_days": 0})
            per_day[day] = {
                "events_read": got["accepted"] + sum(by_reason.values()),
                "events_rejected": sum(by_reason.values()),
                "rejected_by_reason": dict(sorted(by_reason.items())),
                "duplicates_dropped": got["accepted"] - got["events"],
                "events_capped": got["capped_rows"],
                "user_days_capped": got["capped_user_days"],
            }
        _check_rejected_share(per_day, settings, run_date, quarantine)
        if per_day[run_date.isoformat()]["events_read"] - per_day[run_date.isoformat()]["events_rejected"] == 0:
            raise DataError(
                f"no valid events on the run date {run_date} (files: {[p.uri for p in parts][-1]}); "
                "refusing to build recommendations without the day's data"
            )
        n_capped = sum(d["user_days_capped"] for d in per_day.values())
        if n_capped:
            assert cfg.max_events_per_user_day is not None  # users are only capped under a cap
            keys = over_cap_keys(per_user_day, cfg.max_events_per_user_day, n_capped)
            capped_rows = (
                checked.filter(F.col("reason").isNull())
                .withColumn("day", F.col("dt").cast("date"))
                .join(keys, ["user_id", "day"], "left_semi")
            )
            _to_quarantine(capped_rows.withColumn("reason", F.lit(CAPPED_USER_DAY)), quarantine)
            daily = kept = daily.join(keys, ["user_id", "day"], "left_anti").persist(StorageLevel.MEMORY_AND_DISK)
        watch.lap("day_totals_and_bot_guard")

        prev_users = prev_vocab / "users" if prev_vocab else None
        prev_items = prev_vocab / "items" if prev_vocab else None
        new_users, n_users = grow_vocabulary(
            spark, daily.select(F.col("user_id").alias("id")), prev_users, out / "vocab" / "users"
        )
        new_items, n_items = grow_vocabulary(
            spark, daily.select(F.col("item_id").alias("id")), prev_items, out / "vocab" / "items"
        )
        if n_users >= 1 << 32 or n_items >= 1 << 32:  # the daily write's sort keys hold an index in 32 bits
            raise DataError(
                f"{n_users} users and {n_items} items in the vocabularies: "
                "more than the 2**32 of each the extract supports"
            )
        users = _maybe_broadcast(spark.read.parquet(str(out / "vocab" / "users")), n_users, cfg.broadcast_vocab_max)
        items = _maybe_broadcast(spark.read.parquet(str(out / "vocab" / "items")), n_items, cfg.broadcast_vocab_max)
        watch.lap("vocabularies")
        indexed = (
            daily.join(users.withColumnRenamed("id", "user_id").withColumnRenamed("idx", "user_idx"), "user_id")
            .join(items.withColumnRenamed("id", "item_id").withColumnRenamed("idx", "item_idx"), "item_id")
            .select(*DAILY_COLUMNS)
        )
        _write_daily(spark, indexed, out / "daily", [p.day for p in parts], n_users, n_items)
    finally:
        aggregated.unpersist()
        if kept is not None:
            kept.unpersist()

    watch.lap("index_and_write")
    rows = parquet_rows(out / "daily")
    counts = window_counts(spark, out / "daily", rows, n_users, n_items)
    if counts["daily_rows"] != rows:
        raise RuntimeError(
            f"window stats counted {counts['daily_rows']} of the {rows} daily rows: "
            f"a user index outside the vocabulary of {n_users}"
        )
    window: dict[str, Any] = {
        **counts,
        "new_users": new_users,
        "new_items": new_items,
        "vocabulary_users": n_users,
        "vocabulary_items": n_items,
        "kcore": None,
    }
    watch.lap("window_stats")
    if cfg.kcore:
        window["kcore"] = kcore(spark, spark.read.parquet(str(out / "daily")), cfg.kcore, out / "kcore")
        watch.lap("kcore")
    window["timings"] = watch.laps
    return per_day, window


class _Stopwatch:
    """Seconds per phase, each lap measured from the previous one (reported in stats["timings"])."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = round(now - self.last, 2)
        self.last = now


def _to_quarantine(rows: DataFrame, quarantine: Path) -> None:
    """Append rejected rows (raw text where there was text, the typed value otherwise) under day=... partitions."""
    from pyspark.sql import functions as F

    (
        rows.select(
            "user_id",
            "item_id",
            "event_type",
            F.coalesce("event_ts_raw", F.col("event_ts").cast("string")).alias("event_ts_raw"),
            F.coalesce("value_raw", F.col("value").cast("string")).alias("value_raw"),
            "source_file",
            "reason",
            F.col("dt").alias("day"),
        )
        .write.mode("append")
        .partitionBy("day")
        .parquet(str(quarantine))
    )


def _write_daily(
    spark: SparkSession, indexed: DataFrame, dest: Path, days: list[dt.date], n_users: int, n_items: int
) -> None:
    """Append the indexed aggregates as one file per day, sorted by (user, item) with small row groups:
    the scorer reads user ranges and prunes by row-group statistics.

    A writer per day open at once (no more days than that in a task) keeps the sort's order, where
    the usual partitioned write would sort by day alone again.
    """
    conf = "spark.sql.maxConcurrentOutputFileWriters"
    before = spark.conf.get(conf)
    spark.conf.set(conf, str(len(days) + 1))
    try:
        (
            indexed.repartition("day")
            .sortWithinPartitions(*daily_sort_key(min(days), max(days), n_users, n_items))
            .write.mode("append")
            .option("parquet.block.size", 8 * 1024 * 1024)
            .partitionBy("day")
            .parquet(str(dest))
        )
    finally:
        if before is not None:
            spark.conf.set(conf, before)
        else:
            spark.conf.unset(conf)


def daily_sort_key(first: dt.date, last: dt.date, n_users: int, n_items: int) -> list[Column]:
    """Sort columns for (day, user_idx, item_idx) with indices below n_users and n_items.

    One long packing all three when their bits fit in 63: Spark radix-sorts a single integral
    key (at 55M rows: 12 s against 23 s for two keys). Otherwise (day, user) packed, then item.
    """
    from pyspark.sql import functions as F

    day = F.unix_date("day").cast("long") - F.lit(_unix_day(first))
    day_bits = max(1, _unix_day(last) - _unix_day(first)).bit_length()
    user_bits, item_bits = max(1, n_users - 1).bit_length(), max(1, n_items - 1).bit_length()
    if day_bits + user_bits + item_bits <= 63:
        return [
            F.shiftleft(day, user_bits + item_bits)
            + F.shiftleft(F.col("user_idx").cast("long"), item_bits)
            + F.col("item_idx")
        ]
    return [F.shiftleft(day, 32) + F.col("user_idx"), F.col("item_idx")]  # both indices < 2**32


def _unix_day(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def _maybe_broadcast(df: DataFrame, rows: int, limit: int) -> DataFrame:
    from pyspark.sql import functions as F

    return F.broadcast(df) if rows <= limit else df
