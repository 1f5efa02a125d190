"""The Spark extract stage, on real Spark in local mode."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec_core.data.interactions import ExtractedData
from genrec_core.errors import DataError
from genrec_core.extract.job import run_extract
from genrec_core.storage import Storage
from tests.support import RUN_DATE, TINY, make_settings

pytestmark = pytest.mark.integration


def _bad_rows() -> pa.Table:
    ts = lambda s: dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC)  # noqa: E731
    rows = [
        ("", "i000001", "view", ts("2026-11-20T10:00"), None),  # empty user
        ("u0000001", None, "view", ts("2026-11-20T10:00"), None),  # empty item
        ("u0000001", "i000001", "like", ts("2026-11-20T10:00"), None),  # unknown type
        ("u0000001", "i000001", "view", None, None),  # no timestamp
        ("u0000001", "i000001", "view", ts("2026-11-22T10:00"), None),  # outside its partition
        ("u0000001", "i000001", "rating", ts("2026-11-20T10:00"), None),  # rating without value
        ("u0000001", "i000001", "purchase", ts("2026-11-20T10:00"), -3.0),  # negative value
    ]
    cols = list(zip(*rows))
    return pa.table(
        {
            "user_id": pa.array(cols[0], pa.string()),
            "item_id": pa.array(cols[1], pa.string()),
            "event_type": pa.array(cols[2], pa.string()),
            "event_ts": pa.array(cols[3], pa.timestamp("us", tz="UTC")),
            "value": pa.array(cols[4], pa.float64()),
        }
    )


@pytest.fixture()
def events(tiny_log_dir, tmp_path):
    path = tmp_path / "events"
    shutil.copytree(tiny_log_dir, path)
    return path


def test_extract_indexes_weights_and_counts(events, tmp_path):
    settings = make_settings(events.as_uri(), (tmp_path / "out").as_uri())
    result = run_extract(settings, RUN_DATE, Storage())
    stats = result.stats
    raw = pq.read_table(events).num_rows
    assert stats["events_read"] == raw and stats["events_rejected"] == 0
    assert stats["duplicates_dropped"] > 0  # the generator writes some exact duplicates
    assert stats["days_present"][-1] == "2026-11-20" and len(stats["days_present"]) == TINY.days

    data = ExtractedData(result.uri, RUN_DATE, Storage())
    users, items = data.vocabularies()
    assert len(users) == stats["users"] and len(items) == stats["items"]
    assert list(users.ids) == sorted(users.ids)  # first run: indices follow id order
    train, holdout, full = data.split()
    assert 0 < full.matrix.nnz < stats["pairs"]  # low ratings are seen, not positive
    assert holdout.matrix.nnz > 0 and train.matrix.nnz > 0
    assert set(np.unique(full.matrix.data)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    seen = data.seen()
    assert seen.matrix.nnz >= full.matrix.nnz and seen.matrix.nnz == stats["pairs"]

    # one file per day, sorted by (user, item): the scorer prunes row groups by user range
    day_dirs = sorted((tmp_path / "out" / "extract" / "dt=2026-11-20" / "daily").glob("day=*"))
    assert len(day_dirs) == TINY.days
    for day_dir in day_dirs:
        (file,) = day_dir.glob("*.parquet")
        keys = pq.read_table(file, columns=["user_idx", "item_idx"]).to_pandas()
        assert len(keys) > 1 and keys.equals(keys.sort_values(["user_idx", "item_idx"], ignore_index=True))


def test_rejected_rows_are_quarantined_with_their_reason(events, tmp_path):
    pq.write_table(_bad_rows(), events / "dt=2026-11-20" / "part-bad.parquet")
    settings = make_settings(events.as_uri(), (tmp_path / "out").as_uri())
    result = run_extract(settings, RUN_DATE, Storage())
    assert result.stats["events_rejected"] == 7
    assert result.stats["rejected_by_reason"] == {
        "bad_timestamp": 1,
        "bad_value": 2,
        "empty_item_id": 1,
        "empty_user_id": 1,
        "timestamp_outside_partition": 1,
        "unknown_event_type": 1,
    }
    quarantine = pq.read_table(tmp_path / "out" / "extract" / "dt=2026-11-20" / "quarantine").to_pandas()
    assert len(quarantine) == 7 and quarantine.reason.notna().all()


def test_too_many_rejects_fail_loudly(events, tmp_path):
    pq.write_table(_bad_rows(), events / "dt=2026-11-20" / "part-bad.parquet")
    settings = make_settings(events.as_uri(), (tmp_path / "out").as_uri(), max_rejected_share=0.0001)
    with pytest.raises(DataError, match=r"7 of \d+ events .* rejected.*max_rejected_share"):
        run_extract(settings, RUN_DATE, Storage())


def test_never_reads_a_partition_after_the_run_date(events, tmp_path):
    # A partition dated after D that would fail the run if it were read (it lacks required columns).
    future = events / "dt=2026-11-21"
    future.mkdir()
    pq.write_table(pa.table({"oops": [1]}), future / "part-0.parquet")
    settings = make_settings(events.as_uri(), (tmp_path / "out").as_uri())
    result = run_extract(settings, RUN_DATE, Storage())
    assert "2026-11-21" not in result.stats["days_present"]
    with pytest.raises(DataError, match="dt=2026-11-21.*missing"):
        run_extract(settings, dt.date(2026, 11, 21), Storage())


def test_missing_run_date_partition_is_an_error(events, tmp_path):
    shutil.rmtree(events / "dt=2026-11-20")
    settings = make_settings(events.as_uri(), (tmp_path / "out").as_uri())
    with pytest.raises(DataError, match="no raw events for run date 2026-11-20"):
        run_extract(settings, RUN_DATE, Storage())


def test_vocabulary_is_append_only_across_runs(events, tmp_path):
    settings = make_settings(events.as_uri(), (tmp_path / "out").as_uri())
    first = run_extract(settings, dt.date(2026, 11, 19), Storage())
    # day D brings a brand-new user and item
    extra = pa.table(
        {
            "user_id": ["a-new-user"],
            "item_id": ["a-new-item"],
            "event_type": ["purchase"],
            "event_ts": pa.array([dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
            "value": pa.array([10.0]),
        }
    )
    pq.write_table(extra, events / "dt=2026-11-20" / "part-new.parquet")
    second = run_extract(settings, RUN_DATE, Storage())
    u1, i1 = ExtractedData(first.uri, dt.date(2026, 11, 19), Storage()).vocabularies()
    u2, i2 = ExtractedData(second.uri, RUN_DATE, Storage()).vocabularies()
    assert list(u2.ids[: len(u1)]) == list(u1.ids) and list(i2.ids[: len(i1)]) == list(i1.ids)
    assert "a-new-user" in set(u2.ids[len(u1) :]) and "a-new-item" in set(i2.ids[len(i1) :])
    assert second.stats["previous_extract"] == first.uri


@pytest.mark.parametrize("n_users,n_items", [(40, 9), (1 << 31, 1 << 31)])  # one packed long; two keys
def test_daily_sort_key_orders_by_day_user_item(n_users, n_items):
    from genrec_core.extract.job import daily_sort_key
    from genrec_core.extract.spark import get_spark

    rng = np.random.default_rng(3)
    first = dt.date(2026, 10, 1)
    rows = [
        (first + dt.timedelta(days=int(d)), int(u), int(i))
        for d, u, i in zip(rng.integers(0, 30, 400), rng.integers(0, 40, 400), rng.integers(0, 9, 400))
    ]
    rows += [(first, n_users - 1, n_items - 1), (first + dt.timedelta(days=29), 0, 0)]  # the extremes
    spark = get_spark("local[2]", "1g")
    df = spark.createDataFrame(rows, "day date, user_idx long, item_idx long")
    keys = daily_sort_key(first, first + dt.timedelta(days=29), n_users, n_items)
    assert len(keys) == (1 if n_users < 1024 else 2)
    got = [tuple(r) for r in df.coalesce(1).sortWithinPartitions(*keys).collect()]
    assert got == sorted(rows)


def test_daily_rows_keep_each_pairs_first_and_last_event_and_histories_follow_them(events, tmp_path):
    """first_ts/last_ts are the earliest and latest accepted event of the (user, item, day); a user's history
    is ordered by each positive pair's first event in the window, ties by item index."""
    settings = make_settings(events.as_uri(), (tmp_path / "out").as_uri())
    result = run_extract(settings, RUN_DATE, Storage())
    data = ExtractedData(result.uri, RUN_DATE, Storage())
    users, items = data.vocabularies()
    table = pq.read_table(events)
    raw = table.select(["user_id", "item_id"]).to_pandas()
    raw["micros"] = table.column("event_ts").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    raw["day"] = table.column("event_ts").to_pandas().dt.strftime("%Y-%m-%d").to_numpy()
    expected = raw.groupby(["user_id", "item_id", "day"]).micros.agg(["min", "max"]).reset_index()
    daily = Storage().read_table(data.daily_uri).to_pandas()
    daily["user_id"] = users.ids[daily.user_idx.to_numpy()]
    daily["item_id"] = items.ids[daily.item_idx.to_numpy()]
    daily["day"] = daily.day.astype(str)
    got = daily.merge(expected, on=["user_id", "item_id", "day"], how="left", validate="one_to_one")
    assert len(got) == len(daily) and got["min"].notna().all()
    assert (got.first_ts == got["min"]).all() and (got.last_ts == got["max"]).all()
    assert (got.first_ts <= got.last_ts).all() and (got.first_ts < got.last_ts).any()

    _, _, full = data.split()
    positive = daily[daily.weight > 0].groupby(["user_idx", "item_idx"]).first_ts.min().reset_index()
    positive = positive.sort_values(["user_idx", "first_ts", "item_idx"])
    positive["place"] = positive.groupby("user_idx").cumcount() + 1
    order = full.ordered().tocoo()
    places = dict(zip(zip(order.row.tolist(), order.col.tolist()), order.data.astype(int).tolist()))
    assert places == dict(zip(zip(positive.user_idx, positive.item_idx), positive.place))
