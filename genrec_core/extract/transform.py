"""The extract's DataFrame transformations: validation, weighting, aggregation, bot guard, ids, k-core."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrec_core.config import Settings
from genrec_core.contract import (
    EVENT_TYPES,
    MAX_ID_LENGTH,
    REJECT_BAD_ID,
    REJECT_EMPTY_ITEM,
    REJECT_EMPTY_USER,
    REJECT_EVENT_TYPE,
    REJECT_MALFORMED,
    REJECT_OUT_OF_PARTITION,
    REJECT_SCHEMA_DRIFT,
    REJECT_TIMESTAMP,
    REJECT_VALUE,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

_BROADCAST_KEYS_MAX = 1_000_000
_KCORE_MAX_ITERATIONS = 50


def rejection_reason() -> Column:
    """The first rule a normalised raw row breaks, or null for a valid row."""
    from pyspark.sql import functions as F

    blank = lambda c: F.col(c).isNull() | (F.trim(F.col(c)) == "")  # noqa: E731
    bad_number = F.isnan(F.col("value")) | (F.col("value") < 0)
    # Control characters cannot be stored or shown safely downstream (Postgres text refuses NUL).
    bad_id = lambda c: (F.length(F.col(c)) > MAX_ID_LENGTH) | F.col(c).rlike(r"\p{Cc}")  # noqa: E731
    return (
        F.when(F.col("malformed"), REJECT_MALFORMED)
        .when(F.col("drift"), REJECT_SCHEMA_DRIFT)
        .when(blank("user_id"), REJECT_EMPTY_USER)
        .when(blank("item_id"), REJECT_EMPTY_ITEM)
        .when(bad_id("user_id") | bad_id("item_id"), REJECT_BAD_ID)
        .when(F.col("event_type").isNull() | ~F.col("event_type").isin(list(EVENT_TYPES)), REJECT_EVENT_TYPE)
        .when(F.col("event_ts").isNull(), REJECT_TIMESTAMP)  # missing or unparseable
        .when(F.to_date("event_ts") != F.to_date("dt"), REJECT_OUT_OF_PARTITION)
        .when(F.col("value").isNull() & F.col("value_raw").isNotNull(), REJECT_VALUE)  # unparseable
        .when(F.col("value").isNotNull() & bad_number, REJECT_VALUE)
        .when((F.col("event_type") == "rating") & F.col("value").isNull(), REJECT_VALUE)
    )


_REJECT_MARK = "\x00"  # prefixes a reject-count row's user_id; a valid id never holds a control character


def event_code() -> Column:
    """The event type as a small integer (its position in EVENT_TYPES): cheaper to hash and shuffle than text."""
    from pyspark.sql import functions as F

    return F.create_map(*[F.lit(x) for code, name in enumerate(EVENT_TYPES) for x in (name, code)])[
        F.col("event_type")
    ].cast("byte")


def event_weight(settings: Settings) -> Column:
    """An event's implicit-feedback strength from its `event` code: its type's weight; a rating counts
    only at or above the threshold. 0 for a row without an event (a reject count)."""
    from pyspark.sql import functions as F

    codes = {name: code for code, name in enumerate(EVENT_TYPES)}
    pairs = [F.lit(x) for name, weight in sorted(settings.event_weights.items()) for x in (codes[name], weight)]
    weight_of = F.create_map(*pairs)[F.col("event")]
    rating_weight = float(settings.event_weights.get("rating", 0.0))
    return F.coalesce(
        F.when(
            F.col("event") == codes["rating"],
            F.when(F.col("value") >= settings.rating_threshold, F.lit(rating_weight)).otherwise(F.lit(0.0)),
        ).otherwise(weight_of),
        F.lit(0.0),
    )


def aggregate(checked: DataFrame, settings: Settings) -> DataFrame:
    """Checked rows -> one row per (user_id, item_id, day): max weight, distinct events, accepted raw rows,
    and the pair's first and last event time that day (microseconds since the epoch, UTC): the order of a
    user's items across and within days.

    Exact duplicate rows count once. Every accepted pair is kept (weight 0 = seen but not a
    positive signal, e.g. a low rating): training uses weight > 0, the scorer never recommends a seen pair.

    The same pass counts the rejected rows, so a clean file is read once: a rejected row becomes
    a row without an event whose user_id is the marker plus its file and whose item_id is its
    reason; `split_rejects` separates those counts from the pairs.
    """
    from pyspark.sql import functions as F

    ok = F.col("reason").isNull()
    rows = checked.select(
        F.when(ok, F.col("user_id")).otherwise(F.concat(F.lit(_REJECT_MARK), F.col("source_file"))).alias("user_id"),
        F.when(ok, F.col("item_id")).otherwise(F.col("reason")).alias("item_id"),
        F.col("dt").cast("date").alias("day"),
        F.when(ok, event_code()).alias("event"),
        F.when(ok, F.unix_micros("event_ts")).alias("ts"),  # a long hashes cheaper than a timestamp struct
        F.when(ok, F.col("value")).alias("value"),
    )
    # One shuffle: partitions hashed on user_id also cluster the dedupe key, the pair key and the
    # bot guard's user-day key, so none of the aggregations after it shuffles again.
    distinct = (
        rows.repartition("user_id")
        .groupBy("user_id", "item_id", "day", "event", "ts", "value")
        .agg(F.count(F.lit(1)).alias("copies"))
    )
    return (
        distinct.withColumn("weight", event_weight(settings))
        .groupBy("user_id", "item_id", "day")
        .agg(
            F.max("weight").alias("weight"),
            F.count(F.lit(1)).alias("events"),
            F.sum("copies").alias("accepted"),
            F.min("ts").alias("first_ts"),
            F.max("ts").alias("last_ts"),
        )
    )


def split_rejects(aggregated: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(pairs, reject counts) of `aggregate`'s output; the counts have (day, reason, source_file, rows)."""
    from pyspark.sql import functions as F

    is_count = F.col("user_id").startswith(_REJECT_MARK)
    counts = aggregated.filter(is_count).select(
        F.col("day"),
        F.col("item_id").alias("reason"),
        F.substring("user_id", 2, 1 << 30).alias("source_file"),
        F.col("accepted").alias("rows"),
    )
    return aggregated.filter(~is_count), counts


def user_days(daily: DataFrame) -> DataFrame:
    """Per (user_id, day): accepted raw rows and distinct events; the bot guard and per-day counts read it."""
    from pyspark.sql import functions as F

    return daily.groupBy("user_id", "day").agg(F.sum("accepted").alias("accepted"), F.sum("events").alias("events"))


def day_totals(per_user_day: DataFrame, cap: int | None) -> dict[str, dict[str, int]]:
    """Per day: accepted raw rows, distinct events, and the rows and user-days over the bot guard's cap."""
    from pyspark.sql import functions as F

    over = (F.col("accepted") > cap) if cap is not None else F.lit(False)
    rows = (
        per_user_day.groupBy("day")
        .agg(
            F.sum("accepted").alias("accepted"),
            F.sum("events").alias("events"),
            F.sum(F.when(over, F.col("accepted")).otherwise(0)).alias("capped_rows"),
            F.count_if(over).alias("capped_user_days"),
        )
        .collect()
    )
    return {
        row["day"].isoformat(): {k: int(row[k]) for k in ("accepted", "events", "capped_rows", "capped_user_days")}
        for row in rows
    }


def over_cap_keys(per_user_day: DataFrame, cap: int, n_keys: int) -> DataFrame:
    """Bot guard: the (user_id, day) keys with more than `cap` accepted rows (broadcast when few); such a
    user-day is dropped whole."""
    from pyspark.sql import functions as F

    keys = per_user_day.filter(F.col("accepted") > cap).select("user_id", "day")
    return F.broadcast(keys) if n_keys <= _BROADCAST_KEYS_MAX else keys


def grow_vocabulary(spark: SparkSession, ids: DataFrame, previous: Path | None, dest: Path) -> tuple[int, int]:
    """Write the previous vocabulary plus ids not seen before (indexed in id order after it) to `dest`.

    Returns (new ids, vocabulary size).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if previous is not None and previous.exists():
        prev = spark.read.parquet(str(previous)).select("id", "idx")
        offset = parquet_rows(previous)
    else:
        prev = spark.createDataFrame([], "id string, idx long")
        offset = 0
    new = ids.distinct().join(prev.select("id"), "id", "left_anti")
    # One ordered pass over the new ids in a single partition (Spark warns): indices must be dense, in id order.
    new = new.withColumn("idx", (F.row_number().over(Window.orderBy("id")) - 1 + offset).cast("long"))
    prev.unionByName(new).repartition(1).write.mode("overwrite").parquet(str(dest))
    total = parquet_rows(dest)
    return total - offset, total


def parquet_rows(path: Path) -> int:
    """Rows of the Parquet data set at a local path, from the files' footers (no Spark job)."""
    import pyarrow.dataset as pads

    return pads.dataset(str(path), format="parquet", partitioning="hive").count_rows()


def kcore(spark: SparkSession, window_daily: DataFrame, k: int, dest: Path) -> dict[str, Any]:
    """Iteratively keep users and items with at least k positive pairs in the window; write the kept indices."""
    from pyspark.sql import functions as F

    pairs = window_daily.filter(F.col("weight") > 0).select("user_idx", "item_idx").distinct().localCheckpoint()
    size = pairs.count()
    iterations = 0
    while iterations < _KCORE_MAX_ITERATIONS:
        iterations += 1
        users_ok = pairs.groupBy("user_idx").count().filter(F.col("count") >= k).select("user_idx")
        items_ok = pairs.groupBy("item_idx").count().filter(F.col("count") >= k).select("item_idx")
        kept = pairs.join(users_ok, "user_idx", "left_semi").join(items_ok, "item_idx", "left_semi").localCheckpoint()
        kept_size = kept.count()
        pairs = kept
        if kept_size == size:
            break
        size = kept_size
    pairs.select("user_idx").distinct().repartition(1).write.mode("overwrite").parquet(str(dest / "users"))
    pairs.select("item_idx").distinct().repartition(1).write.mode("overwrite").parquet(str(dest / "items"))
    users = spark.read.parquet(str(dest / "users")).count()
    items = spark.read.parquet(str(dest / "items")).count()
    return {"k": k, "users": users, "items": items, "pairs": size, "iterations": iterations}
