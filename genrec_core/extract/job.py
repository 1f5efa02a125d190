"""Spark job: read the window's raw partitions, validate, quarantine, dedupe, weight, index.

Output under ``{output_uri}/extract/dt=D/``:
  daily/day=YYYY-MM-DD/   aggregates (user_idx, item_idx, weight, events) per day; weight 0 = seen only
  vocab/users, vocab/items  append-only vocabularies (id, idx)
  quarantine/             rejected rows with a `reason` column
  stats.json              counts the quality gate reads
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrec_core.config import Settings
from genrec_core.contract import (
    EVENT_TYPES,
    REJECT_EMPTY_ITEM,
    REJECT_EMPTY_USER,
    REJECT_EVENT_TYPE,
    REJECT_OUT_OF_PARTITION,
    REJECT_TIMESTAMP,
    REJECT_VALUE,
    REQUIRED_COLUMNS,
    partition_name,
)
from genrec_core.errors import DataError
from genrec_core.extract.spark import get_spark
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


def extract_uri_for(output_uri: str, run_date: dt.date) -> str:
    return join(output_uri, "extract", partition_name(run_date))


def previous_extract(output_uri: str, run_date: dt.date, storage: Storage) -> str | None:
    """The newest extract dated strictly before `run_date` that finished (has stats.json)."""
    root = join(output_uri, "extract")
    earlier = sorted(
        (name for name in storage.list_dir(root) if name.startswith("dt=") and name[3:] < run_date.isoformat()),
        reverse=True,
    )
    for name in earlier:
        if storage.exists(join(root, name, "stats.json")):
            return join(root, name)
    return None


def run_extract(settings: Settings, run_date: dt.date, storage: Storage) -> ExtractResult:
    """Run the extract for `run_date`; idempotent (a rerun replaces the date's output)."""
    days = window_days(run_date, settings.lookback_days)
    partitions = [(d, join(settings.events_uri, partition_name(d))) for d in days]
    present = [(d, uri) for d, uri in partitions if storage.exists(uri)]
    if not present or present[-1][0] != run_date:
        raise DataError(f"no raw events for run date {run_date}: {join(settings.events_uri, partition_name(run_date))} "
                        "does not exist; refusing to build recommendations without the day's data")
    prev = previous_extract(settings.output_uri, run_date, storage)
    out_uri = extract_uri_for(settings.output_uri, run_date)
    spark = get_spark(settings.spark_master, settings.spark_driver_memory)

    mirror = [uri for _, uri in present] + ([join(prev, "vocab")] if prev else [])
    with storage.local_mirror(mirror) as local_paths:
        event_paths = list(zip([d for d, _ in present], [u for _, u in present], local_paths[: len(present)]))
        prev_vocab = local_paths[-1] if prev else None
        with storage.local_output(out_uri) as out:
            stats = _extract(spark, event_paths, prev_vocab, out, settings, run_date)
    stats.update({
        "run_date": run_date.isoformat(),
        "window_start": days[0].isoformat(),
        "days_present": [d.isoformat() for d, _ in present],
        "days_missing": [d.isoformat() for d, uri in partitions if (d, uri) not in present],
        "previous_extract": prev,
    })
    storage.write_json(join(out_uri, "stats.json"), stats)
    log.info("extract %s: %s", run_date, stats)
    return ExtractResult(out_uri, stats)


def _read_partitions(spark: "SparkSession", parts: list[tuple[dt.date, str, Path]]) -> "DataFrame":
    from pyspark.sql import functions as F

    frames = []
    for day, uri, path in parts:
        df = spark.read.parquet(str(path))
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise DataError(f"partition {uri}: required column(s) {missing} missing (found {df.columns})")
        frames.append(df.select(
            F.col("user_id").cast("string").alias("user_id"),
            F.col("item_id").cast("string").alias("item_id"),
            F.col("event_type").cast("string").alias("event_type"),
            F.col("event_ts").cast("timestamp").alias("event_ts"),
            F.col("value").cast("double").alias("value"),
            F.lit(day.isoformat()).alias("dt"),
        ))
    return functools.reduce(lambda a, b: a.unionByName(b), frames)


def _rejection_reason() -> "Column":
    from pyspark.sql import functions as F

    blank = lambda c: F.col(c).isNull() | (F.trim(F.col(c)) == "")  # noqa: E731
    bad_number = F.isnan(F.col("value")) | (F.col("value") < 0)
    return (
        F.when(blank("user_id"), REJECT_EMPTY_USER)
        .when(blank("item_id"), REJECT_EMPTY_ITEM)
        .when(F.col("event_type").isNull() | ~F.col("event_type").isin(list(EVENT_TYPES)), REJECT_EVENT_TYPE)
        .when(F.col("event_ts").isNull(), REJECT_TIMESTAMP)
        .when(F.date_format("event_ts", "yyyy-MM-dd") != F.col("dt"), REJECT_OUT_OF_PARTITION)
        .when(F.col("value").isNotNull() & bad_number, REJECT_VALUE)
        .when((F.col("event_type") == "rating") & F.col("value").isNull(), REJECT_VALUE)
    )


def _event_weight(settings: Settings) -> "Column":
    from pyspark.sql import functions as F

    pairs = [F.lit(x) for kv in sorted(settings.event_weights.items()) for x in kv]
    weight_of = F.create_map(*pairs)[F.col("event_type")]
    rating_weight = float(settings.event_weights.get("rating", 0.0))
    return F.coalesce(
        F.when(F.col("event_type") == "rating",
               F.when(F.col("value") >= settings.rating_threshold, F.lit(rating_weight)).otherwise(F.lit(0.0)))
        .otherwise(weight_of),
        F.lit(0.0),
    )


def _grow_vocabulary(spark: "SparkSession", ids: "DataFrame", previous: Path | None) -> tuple["DataFrame", int]:
    """Append ids not seen before, in id order, after the previous vocabulary's indices."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if previous is not None and previous.exists():
        prev = spark.read.parquet(str(previous)).select("id", "idx")
        offset = prev.count()
    else:
        prev = spark.createDataFrame([], "id string, idx long")
        offset = 0
    new = ids.distinct().join(prev, "id", "left_anti")
    new = new.withColumn("idx", (F.row_number().over(Window.orderBy("id")) - 1 + offset).cast("long"))
    vocab = prev.unionByName(new)
    return vocab, new.count()


def _extract(spark: "SparkSession", parts: list[tuple[dt.date, str, Path]], prev_vocab: Path | None,
             out: Path, settings: Settings, run_date: dt.date) -> dict[str, Any]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    checked = _read_partitions(spark, parts).withColumn("reason", _rejection_reason())
    checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        by_reason = {row["reason"]: row["count"] for row in checked.groupBy("reason").count().collect()}
        events_read = sum(by_reason.values())
        accepted = by_reason.pop(None, 0)
        rejected = sum(by_reason.values())
        checked.filter(F.col("reason").isNotNull()).write.mode("overwrite").parquet(str(out / "quarantine"))
        share = rejected / events_read if events_read else 0.0
        if share > settings.max_rejected_share:
            raise DataError(
                f"{rejected} of {events_read} events ({share:.1%}) rejected, above the threshold "
                f"max_rejected_share={settings.max_rejected_share:.1%}; by reason: {dict(sorted(by_reason.items()))}; "
                f"rows are in {out / 'quarantine'}")
        if accepted == 0:
            raise DataError(f"no valid events in the window ending {run_date}")

        good = checked.filter(F.col("reason").isNull()).drop("reason")
        deduped = good.dropDuplicates(["user_id", "item_id", "event_type", "event_ts", "value", "dt"])
        weighted = deduped.withColumn("weight", _event_weight(settings))
        # Every accepted pair is kept (weight 0 = seen but not a positive signal, e.g. a low rating):
        # training uses weight > 0, the scorer never recommends any seen pair.
        daily = (weighted
                 .groupBy("user_id", "item_id", "dt")
                 .agg(F.max("weight").alias("weight"), F.count(F.lit(1)).alias("events"))
                 .persist(StorageLevel.MEMORY_AND_DISK))

        prev_users = prev_vocab / "users" if prev_vocab else None
        prev_items = prev_vocab / "items" if prev_vocab else None
        users, new_users = _grow_vocabulary(spark, daily.select(F.col("user_id").alias("id")), prev_users)
        items, new_items = _grow_vocabulary(spark, daily.select(F.col("item_id").alias("id")), prev_items)
        users.repartition(1).write.mode("overwrite").parquet(str(out / "vocab" / "users"))
        items.repartition(1).write.mode("overwrite").parquet(str(out / "vocab" / "items"))
        users = spark.read.parquet(str(out / "vocab" / "users"))
        items = spark.read.parquet(str(out / "vocab" / "items"))

        indexed = (daily
                   .join(users.withColumnRenamed("id", "user_id").withColumnRenamed("idx", "user_idx"), "user_id")
                   .join(items.withColumnRenamed("id", "item_id").withColumnRenamed("idx", "item_idx"), "item_id")
                   .select("user_idx", "item_idx", F.col("dt").alias("day"), "weight", "events"))
        # Sorted by user with small row groups: the scorer reads user ranges and prunes by row-group statistics.
        indexed.repartition("day").sortWithinPartitions("user_idx", "item_idx") \
            .write.mode("overwrite").option("parquet.block.size", 8 * 1024 * 1024) \
            .partitionBy("day").parquet(str(out / "daily"))

        summary = daily.agg(
            F.countDistinct("user_id").alias("users"),
            F.countDistinct("item_id").alias("items"),
            F.countDistinct("user_id", "item_id").alias("pairs"),
            F.count(F.lit(1)).alias("daily_rows"),
        ).first()
        deduped_count = deduped.count()
        daily.unpersist()
    finally:
        checked.unpersist()

    users_n, items_n, pairs = summary["users"], summary["items"], summary["pairs"]
    return {
        "events_read": events_read,
        "events_rejected": rejected,
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "rejected_share": share,
        "duplicates_dropped": accepted - deduped_count,
        "users": users_n,
        "items": items_n,
        "pairs": pairs,
        "daily_rows": summary["daily_rows"],
        "density": pairs / (users_n * items_n) if users_n and items_n else 0.0,
        "new_users": new_users,
        "new_items": new_items,
    }
