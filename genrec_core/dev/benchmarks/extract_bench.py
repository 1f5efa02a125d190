"""Extract benchmark: the Spark job's events/s against a bare read + groupBy of the same files.

A synthetic log of `days + 1` days is generated (in a child process, so its memory does not
count as the driver's). The full extract runs for the day before the last (a whole window
of `days` days); the incremental extract then runs for the last day, reusing it. The floor
reads the full extract's files and groups them by (user, item, day), writing nothing. Both sides
run once on the last 3 days first, so the timings compare warm JVMs.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from genrec_core.config import load_settings
from genrec_core.dev.benchmarks.common import peak_rss_mb
from genrec_core.dev.generate import LogSpec, generate_logs

END = dt.date(2026, 11, 20)


def _generate(spec: LogSpec, uri: str) -> None:
    generate_logs(spec, uri)


def _floor(spark: Any, paths: list[str]) -> float:
    from pyspark.sql import functions as F

    started = time.perf_counter()
    (
        spark.read.parquet(*paths)
        .groupBy("user_id", "item_id", F.to_date("event_ts").alias("day"))
        .agg(F.count(F.lit(1)).alias("events"))
        .write.format("noop")
        .mode("overwrite")
        .save()
    )
    return time.perf_counter() - started


def run(
    users: int,
    items: int,
    days: int = 30,
    driver_memory: str = "6g",
    master: str = "local[2]",
    events_per_active_user: float = 6.0,
    work_dir: str | None = None,
) -> dict[str, Any]:
    from genrec_core.extract.job import run_extract
    from genrec_core.extract.spark import get_spark
    from genrec_core.storage import Storage

    root = Path(tempfile.mkdtemp(prefix="genrec-bench-extract-", dir=work_dir))
    try:
        spec = LogSpec(
            users=users, items=items, days=days + 1, end_date=END, seed=0, events_per_active_user=events_per_active_user
        )
        started = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(target=_generate, args=(spec, (root / "events").as_uri()))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"log generation failed with exit code {child.exitcode}")
        generate_s = time.perf_counter() - started
        settings = load_settings(
            events_uri=(root / "events").as_uri(),
            output_uri=(root / "out").as_uri(),
            lookback_days=days,
            spark_master=master,
            spark_driver_memory=driver_memory,
        )
        storage = Storage()
        spark = get_spark(master, driver_memory)
        day_before = END - dt.timedelta(days=1)
        window = [str(root / "events" / f"dt={day_before - dt.timedelta(days=n)}") for n in range(days)]

        # Warm the JVM on the last 3 days, each side with its own queries, so neither pays for JIT compiling.
        _floor(spark, window[-3:])
        run_extract(
            settings.model_copy(update={"lookback_days": 3, "output_uri": (root / "warm").as_uri()}),
            day_before,
            storage,
        )
        floor_s = _floor(spark, window)
        started = time.perf_counter()
        full = run_extract(settings, day_before, storage)
        full_s = time.perf_counter() - started
        started = time.perf_counter()
        incremental = run_extract(settings, END, storage)
        incremental_s = time.perf_counter() - started
        if incremental.stats["mode"] != "incremental":
            raise RuntimeError(f"the second extract was not incremental: {incremental.stats['mode']}")
        events = full.stats["events_read"]
        day_events = incremental.stats["per_day"][str(END)]["events_read"]
        return {
            "events": events,
            "users": users,
            "items": items,
            "days": days,
            "master": master,
            "jvm_driver_memory": driver_memory,
            "pairs": full.stats["pairs"],
            "daily_rows": full.stats["daily_rows"],
            "full_seconds": round(full_s, 1),
            "full_events_per_s": round(events / full_s),
            "incremental_day_events": day_events,
            "incremental_seconds": round(incremental_s, 1),
            "incremental_events_per_s": round(day_events / incremental_s),
            "floor_seconds": round(floor_s, 1),
            "floor_events_per_s": round(events / floor_s),
            "ratio": round(full_s / floor_s, 2),
            "driver_peak_rss_mb": round(peak_rss_mb(), 1),
            "generate_seconds": round(generate_s, 1),
            "full_phases_s": full.stats["timings"],
            "incremental_phases_s": incremental.stats["timings"],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
