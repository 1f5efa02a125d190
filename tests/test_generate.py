import datetime as dt

import pyarrow.parquet as pq

from genrec_core.contract import EVENT_TYPES, LOG_COLUMNS
from genrec_core.dev.generate import LogSpec, generate_logs


def test_writes_one_partition_per_day_in_the_contract(tmp_path):
    spec = LogSpec(users=100, items=40, days=3, end_date=dt.date(2026, 1, 3), seed=1)
    counts = generate_logs(spec, tmp_path.as_uri())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dt=2026-01-01", "dt=2026-01-02", "dt=2026-01-03"]
    table = pq.read_table(tmp_path / "dt=2026-01-02")
    assert tuple(table.column_names) == LOG_COLUMNS
    df = table.to_pandas()
    assert set(df.event_type) <= set(EVENT_TYPES) and {"view", "purchase"} <= set(df.event_type)
    assert (df.event_ts.dt.strftime("%Y-%m-%d") == "2026-01-02").all()
    assert df.user_id.str.match(r"^u\d{7}$").all()
    assert counts["events"] == sum(pq.read_table(p).num_rows for p in tmp_path.iterdir())


def test_same_seed_same_bytes(tmp_path):
    spec = LogSpec(users=50, items=20, days=2, end_date=dt.date(2026, 1, 2), seed=9)
    generate_logs(spec, (tmp_path / "a").as_uri())
    generate_logs(spec, (tmp_path / "b").as_uri())
    a = pq.read_table(tmp_path / "a" / "dt=2026-01-02")
    b = pq.read_table(tmp_path / "b" / "dt=2026-01-02")
    assert a.equals(b)


def test_popularity_is_skewed(tmp_path):
    spec = LogSpec(users=500, items=200, days=2, end_date=dt.date(2026, 1, 2), seed=2)
    generate_logs(spec, tmp_path.as_uri())
    counts = pq.read_table(tmp_path).to_pandas().item_id.value_counts()
    top_share = counts.iloc[:20].sum() / counts.sum()
    assert top_share > 0.3  # the top 10% of items draw far more than 10% of events
