"""Distinct users, items and (user, item) pairs of the window's daily aggregates, without a shuffle.

Each day's file is sorted by user (see `job._write_daily`), so the users of one index range sit
in a few row groups of every day (while a day is a single 8 MB row group, every task reads it
whole). One task per user range reads those row groups with pyarrow and counts with numpy;
ranges are disjoint, so users and pairs add up, and items merge as a bitmap the size of the
item vocabulary. A Spark distinct of the pairs shuffles every row;
at 63M events (55M daily rows) this cut the phase from 46 s to 6 s on 2 cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_ROWS_PER_TASK = 8_000_000  # bounds a task's memory: about 40 bytes per row at its peak (~330 MB)


@dataclass(frozen=True)
class RangeCounts:
    """Counts of one user-index range [lo, hi) over all days."""

    rows: int
    users: int
    pairs: int
    items: bytes  # np.packbits of a bitmap over the item vocabulary


def count_user_range(daily_dir: str, lo: int, hi: int, n_items: int) -> RangeCounts:
    """Rows, distinct users, distinct pairs and the item bitmap of users lo..hi-1 in `daily_dir`."""
    import pyarrow.dataset as pads

    dataset = pads.dataset(daily_dir, format="parquet", partitioning="hive")
    table = dataset.to_table(
        columns=["user_idx", "item_idx"], filter=(pads.field("user_idx") >= lo) & (pads.field("user_idx") < hi)
    )
    users = table.column("user_idx").to_numpy().astype(np.int64, copy=False)
    items = table.column("item_idx").to_numpy().astype(np.int64, copy=False)
    seen = np.zeros(n_items, dtype=bool)
    seen[items] = True
    # Sorting and counting changes beats np.unique, which in numpy 2.4 took 50 s on 55M keys (sort: 1 s).
    keys = np.sort((users - lo) * n_items + items)  # < (hi - lo) * n_items: no overflow
    pairs = int(keys.size > 0) + int(np.count_nonzero(keys[1:] != keys[:-1]))
    per_user = np.bincount(users - lo, minlength=hi - lo)
    return RangeCounts(
        rows=table.num_rows, users=int(np.count_nonzero(per_user)), pairs=pairs, items=np.packbits(seen).tobytes()
    )


def window_counts(spark: SparkSession, daily_dir: Path, rows: int, n_users: int, n_items: int) -> dict[str, int]:
    """Distinct users, items and pairs, and rows, of the daily aggregates under `daily_dir` (a path
    the executors can read: they wrote it). `rows` (from the footers) sizes the ranges."""
    tasks = max(1, min(n_users, max(spark.sparkContext.defaultParallelism, math.ceil(rows / _ROWS_PER_TASK))))
    bounds = np.linspace(0, n_users, tasks + 1).round().astype(np.int64).tolist()
    path = str(daily_dir)
    ranges = [(bounds[i], bounds[i + 1]) for i in range(tasks) if bounds[i] < bounds[i + 1]]
    counts = (
        spark.sparkContext.parallelize(ranges, len(ranges))
        .map(lambda r: count_user_range(path, r[0], r[1], n_items))
        .collect()
    )
    items = np.zeros(n_items, dtype=bool)
    for c in counts:
        items |= np.unpackbits(np.frombuffer(c.items, dtype=np.uint8), count=n_items).astype(bool)
    return {
        "pairs": sum(c.pairs for c in counts),
        "users": sum(c.users for c in counts),
        "items": int(items.sum()),
        "daily_rows": sum(c.rows for c in counts),
    }
