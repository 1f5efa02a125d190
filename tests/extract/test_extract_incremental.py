"""Incremental extract equals a full recompute; bot guard, k-core and time decay (real Spark)."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec_core.data.interactions import ExtractedData
from genrec_core.extract.job import run_extract
from genrec_core.storage import Storage
from tests.support import RUN_DATE, make_settings

pytestmark = pytest.mark.integration

YESTERDAY = RUN_DATE - dt.timedelta(days=1)
VOLATILE = {"mode", "days_read", "previous_extract", "timings"}


def _table(path, sort: list[str]) -> pd.DataFrame:
    df = pq.read_table(path).to_pandas()
    df["day"] = df["day"].astype(str)
    return df.sort_values(sort).reset_index(drop=True)


def _outputs(out) -> dict[str, pd.DataFrame]:
    root = out / "extract" / f"dt={RUN_DATE}"
    found = {
        "daily": _table(root / "daily", ["day", "user_idx", "item_idx"]),
        "quarantine": _table(root / "quarantine", ["day", "user_id", "item_id", "event_ts_raw", "reason"]),
        "users": pq.read_table(root / "vocab" / "users").to_pandas().sort_values("idx").reset_index(drop=True),
        "items": pq.read_table(root / "vocab" / "items").to_pandas().sort_values("idx").reset_index(drop=True),
    }
    if (root / "kcore").exists():
        found["kcore_users"] = (
            pq.read_table(root / "kcore" / "users").to_pandas().sort_values("user_idx").reset_index(drop=True)
        )
    return found


def _bot_and_bad_rows(events, day: dt.date, user: str, n: int) -> None:
    stamp = dt.datetime.combine(day, dt.time(12), dt.UTC)
    ts = pa.array([stamp + dt.timedelta(seconds=s) for s in range(n)] + [None], pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table(
            {
                "user_id": [user] * (n + 1),
                "item_id": [f"i{s % 50:06d}" for s in range(n + 1)],
                "event_type": ["view"] * (n + 1),
                "event_ts": ts,
                "value": [None] * (n + 1),
            }
        ),
        events / f"dt={day}" / "part-bot.parquet",
    )


@pytest.fixture()
def events(tiny_log_dir, tmp_path):
    path = tmp_path / "events"
    shutil.copytree(tiny_log_dir, path)
    _bot_and_bad_rows(path, dt.date(2026, 11, 17), "bot-early", 80)
    _bot_and_bad_rows(path, RUN_DATE, "bot-today", 80)
    new_on_d = pa.table(
        {
            "user_id": ["zz-new-user", "a-new-user"],
            "item_id": ["zz-new-item", "i000001"],
            "event_type": ["purchase", "view"],
            "event_ts": pa.array([dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)] * 2, pa.timestamp("us", tz="UTC")),
            "value": [None, None],
        }
    )
    pq.write_table(new_on_d, path / f"dt={RUN_DATE}" / "part-new.parquet")
    return path


def test_incremental_equals_full_recompute(events, tmp_path):
    settings = make_settings(
        events.as_uri(),
        (tmp_path / "inc").as_uri(),
        max_rejected_share=0.1,
        extract={"max_events_per_user_day": 60, "kcore": 3},
    )
    yesterday = run_extract(settings, YESTERDAY, Storage())
    assert yesterday.stats["mode"] == "full"
    shutil.copytree(tmp_path / "inc", tmp_path / "full")

    incremental = run_extract(settings, RUN_DATE, Storage())
    full_settings = make_settings(
        events.as_uri(),
        (tmp_path / "full").as_uri(),
        max_rejected_share=0.1,
        extract={"max_events_per_user_day": 60, "kcore": 3},
    )
    full = run_extract(full_settings, RUN_DATE, Storage(), full=True)

    assert incremental.stats["mode"] == "incremental" and incremental.stats["days_read"] == [str(RUN_DATE)]
    assert full.stats["mode"] == "full" and len(full.stats["days_read"]) == 6
    # the bot guard fired on an earlier day (copied) and on D (read), and a bad row each day
    assert incremental.stats["user_days_capped"] == 2 and incremental.stats["events_capped"] == 160
    assert incremental.stats["rejected_by_reason"] == {"bad_timestamp": 2}
    assert incremental.stats["kcore"]["k"] == 3 and incremental.stats["kcore"]["users"] > 0
    assert {k: v for k, v in incremental.stats.items() if k not in VOLATILE} == {
        k: v for k, v in full.stats.items() if k not in VOLATILE
    }
    inc_out, full_out = _outputs(tmp_path / "inc"), _outputs(tmp_path / "full")
    assert set(inc_out) == set(full_out) == {"daily", "quarantine", "users", "items", "kcore_users"}
    for name in inc_out:
        pd.testing.assert_frame_equal(inc_out[name], full_out[name], check_dtype=False, obj=name)
    # the new ids came after yesterday's, in id order; capped rows sit in quarantine with their reason
    old_users = pq.read_table(tmp_path / "inc" / "extract" / f"dt={YESTERDAY}" / "vocab" / "users").num_rows
    new_ids = list(inc_out["users"].id[old_users:])
    assert new_ids == sorted(new_ids) and {"a-new-user", "zz-new-user"} <= set(new_ids)
    assert (inc_out["quarantine"].reason == "over_user_day_cap").sum() == 160


def test_changed_earlier_partition_forces_a_full_recompute(events, tmp_path):
    settings = make_settings(events.as_uri(), (tmp_path / "out").as_uri(), max_rejected_share=0.1)
    run_extract(settings, YESTERDAY, Storage())
    shutil.copy(events / "dt=2026-11-18" / "part-00000.parquet", events / "dt=2026-11-18" / "part-late.parquet")
    result = run_extract(settings, RUN_DATE, Storage())
    assert result.stats["mode"] == "full" and len(result.stats["days_read"]) == 6
    # ... and a change of settings does too
    other = make_settings(
        events.as_uri(),
        (tmp_path / "out").as_uri(),
        max_rejected_share=0.1,
        event_weights={"view": 1.0, "purchase": 9.0},
    )
    run_extract(other, YESTERDAY, Storage())
    assert run_extract(settings, RUN_DATE, Storage()).stats["mode"] == "full"


def test_kcore_keeps_only_users_and_items_with_k_pairs(tiny_log_dir, tmp_path):
    settings = make_settings(tiny_log_dir.as_uri(), (tmp_path / "out").as_uri(), extract={"kcore": 4})
    result = run_extract(settings, RUN_DATE, Storage())
    data = ExtractedData(result.uri, RUN_DATE, Storage())
    _, _, full = data.split()
    matrix = full.matrix
    users = np.diff(matrix.indptr)
    items = np.bincount(matrix.indices, minlength=matrix.shape[1])
    assert (users[users > 0] >= 4).all() and (items[items > 0] >= 4).all()
    assert (users > 0).sum() == result.stats["kcore"]["users"] and matrix.nnz == result.stats["kcore"]["pairs"]
    assert matrix.nnz < result.stats["pairs"]


def test_time_decay_and_count_weight_shape_the_training_matrix(tiny_log_dir, tmp_path):
    plain = run_extract(make_settings(tiny_log_dir.as_uri(), (tmp_path / "a").as_uri()), RUN_DATE, Storage())
    decayed = run_extract(
        make_settings(
            tiny_log_dir.as_uri(), (tmp_path / "b").as_uri(), extract={"decay_half_life_days": 2.0, "count_weight": 0.5}
        ),
        RUN_DATE,
        Storage(),
    )
    daily = pq.read_table(tmp_path / "a" / "extract" / f"dt={RUN_DATE}" / "daily").to_pandas()
    daily = daily[daily.weight > 0]
    daily["age"] = (pd.Timestamp(RUN_DATE) - pd.to_datetime(daily["day"].astype(str))).dt.days
    daily["decayed"] = daily.weight * 0.5 ** (daily.age / 2.0)
    expected = daily.groupby(["user_idx", "item_idx"]).agg(w=("decayed", "max"), n=("events", "sum"))
    expected["w"] += 0.5 * np.log(expected.n)
    _, _, full = ExtractedData(decayed.uri, RUN_DATE, Storage()).split()
    coo = full.matrix.tocoo()
    got = pd.Series(coo.data, index=pd.MultiIndex.from_arrays([coo.row, coo.col])).sort_index()
    np.testing.assert_allclose(got.to_numpy(), expected.w.sort_index().to_numpy(), rtol=1e-5)
    _, _, undecayed = ExtractedData(plain.uri, RUN_DATE, Storage()).split()
    assert undecayed.matrix.nnz == full.matrix.nnz and not np.allclose(undecayed.matrix.data, full.matrix.data)
