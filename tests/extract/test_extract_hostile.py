"""A corpus of hostile logs on real Spark: huge ids, unicode and control characters in ids, a
partition delivered twice, clock-skewed timestamps, one user with a million events, items that
vanish from the logs. Each gives a correct quarantine or a correct result, and nothing is lost."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec_core.extract.job import run_extract
from genrec_core.storage import Storage
from tests.support import RUN_DATE, make_settings, quarantine_rows, vocab_ids

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
UTC = dt.UTC


def _events(users: list[str], items: list[str], stamps: list[dt.datetime]) -> pa.Table:
    n = len(users)
    return pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "item_id": pa.array(items, pa.string()),
            "event_type": ["view"] * n,
            "event_ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "value": pa.array([None] * n, pa.float64()),
        }
    )


def test_hostile_corpus(tiny_log_dir, tmp_path):
    events = tmp_path / "events"
    shutil.copytree(tiny_log_dir, events)
    day = events / f"dt={RUN_DATE}"
    at = dt.datetime(2026, 11, 20, 12, tzinfo=UTC)
    huge = "u" * 10_000
    odd = ["u-ünï-用户-🙂", "u with spaces", "u'; DROP TABLE genrec.runs; --"]  # valid, if unusual
    control = ["u-nul\x00", "u-newline\nx", "u-tab\tx", "u-bell\x07"]
    pq.write_table(
        _events(
            [huge, *odd, *control, "u-ok", "u-ok2"],
            [
                "i000001",
                "i000001",
                "i000002",
                "i000003",
                "i000001",
                "i000002",
                "i000003",
                "i000004",
                "i\x00bad",
                "i" * 300,
            ],
            [at] * 10,
        ),
        day / "part-ids.parquet",
    )
    # clock skew: stamped a day off either way, or in 2099: never inside partition D
    pq.write_table(
        _events(
            ["u-skew"] * 3,
            ["i000001"] * 3,
            [at - dt.timedelta(days=1), at + dt.timedelta(days=1), dt.datetime(2099, 1, 1, tzinfo=UTC)],
        ),
        day / "part-skew.parquet",
    )
    # a partition delivered twice: every row of this file arrives again under another name
    original = next(p for p in sorted(day.iterdir()) if p.name.startswith("part-0"))
    shutil.copy(original, day / "part-0-redelivered.parquet")
    # one user with a million events on day D: the bot guard sends the whole user-day to quarantine
    million = 1_000_000
    rng = np.random.default_rng(0)
    stamps = pa.array(
        np.datetime64("2026-11-20T00:00:00") + rng.integers(0, 86_400_000_000, million).astype("timedelta64[us]"),
        pa.timestamp("us"),
    ).cast(pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array(["u-bot"] * million),
                "item_id": pa.array([f"i{j % 120:06d}" for j in range(million)]),
                "event_type": ["view"] * million,
                "event_ts": stamps,
                "value": pa.array([None] * million, pa.float64()),
            }
        ),
        day / "part-bot.parquet",
    )
    # an item that appeared early in the window and vanishes: only on the window's first day
    first = events / "dt=2026-11-15"
    pq.write_table(
        _events(["u-ok"], ["i-vanishing"], [dt.datetime(2026, 11, 15, 8, tzinfo=UTC)]), first / "part-vanish.parquet"
    )

    settings = make_settings(events.as_uri(), (tmp_path / "out").as_uri(), max_rejected_share=0.5)
    result = run_extract(settings, RUN_DATE, Storage())
    stats = result.stats
    rejected = stats["rejected_by_reason"]
    assert rejected == {"bad_id": 7, "timestamp_outside_partition": 3}, rejected
    quarantine = quarantine_rows(tmp_path / "out")
    assert (quarantine.reason == "over_user_day_cap").sum() == million  # the bot's day, whole and counted
    assert stats["per_day"][str(RUN_DATE)]["events_capped"] == million
    users = set(vocab_ids(result.uri, "users"))
    assert set(odd) <= users and "u-ok" in users
    assert not users & {huge, "u-bot", "u-skew", *control}
    items = vocab_ids(result.uri, "items")
    assert "i-vanishing" in items and not any("\x00" in i or len(i) > 256 for i in items)
    # the redelivered file's rows are exact duplicates: each counted once
    assert stats["duplicates_dropped"] >= pq.read_metadata(original).num_rows
    # nothing lost: every row read is accepted, rejected, capped or a dropped duplicate
    per_day = stats["per_day"][str(RUN_DATE)]
    assert per_day["events_read"] == sum(pq.read_metadata(p).num_rows for p in day.iterdir())
