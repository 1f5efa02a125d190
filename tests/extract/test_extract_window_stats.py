"""Window statistics counted per user range (pyarrow + numpy in Spark tasks) against pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec_core.extract.spark import get_spark
from genrec_core.extract.window_stats import count_user_range, window_counts

N_USERS, N_ITEMS = 500, 90


def _write_daily(root, rng: np.random.Generator) -> pd.DataFrame:
    """Three days of (user, item) pairs, each day sorted by user in two small row groups; pairs repeat across days."""
    frames = []
    for day in ("2026-11-18", "2026-11-19", "2026-11-20"):
        users = rng.integers(0, N_USERS - 50, 2_000)  # the last 50 users of the vocabulary have no rows
        items = rng.integers(0, N_ITEMS - 5, 2_000)  # nor have the last 5 items
        frame = pd.DataFrame({"user_idx": users, "item_idx": items}).drop_duplicates()
        frame = frame.sort_values(["user_idx", "item_idx"], ignore_index=True)
        (root / f"day={day}").mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pandas(frame), root / f"day={day}" / "part-0.parquet", row_group_size=len(frame) // 2 + 1
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.integration
def test_counts_match_pandas(tmp_path):
    daily = _write_daily(tmp_path / "daily", np.random.default_rng(7))
    spark = get_spark("local[2]", "1g")
    counts = window_counts(spark, tmp_path / "daily", len(daily), N_USERS, N_ITEMS)
    assert counts == {
        "pairs": len(daily.drop_duplicates()),
        "users": daily.user_idx.nunique(),
        "items": daily.item_idx.nunique(),
        "daily_rows": len(daily),
    }
    assert counts["users"] < N_USERS and counts["items"] < N_ITEMS  # only what the window holds is counted


def test_ranges_are_disjoint_and_add_up(tmp_path):
    daily = _write_daily(tmp_path / "daily", np.random.default_rng(11))
    bounds = [0, 1, 120, 121, 333, N_USERS]
    parts = [count_user_range(str(tmp_path / "daily"), lo, hi, N_ITEMS) for lo, hi in zip(bounds, bounds[1:])]
    assert sum(p.rows for p in parts) == len(daily)
    assert sum(p.pairs for p in parts) == len(daily.drop_duplicates())
    assert sum(p.users for p in parts) == daily.user_idx.nunique()
    low = daily[daily.user_idx < 120]
    first_two = parts[0].pairs + parts[1].pairs
    assert first_two == len(low.drop_duplicates())
