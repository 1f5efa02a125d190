"""Extract inputs on real Spark: CSV and JSON Lines, schema drift, and a hostile mix of partitions."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec_core.errors import DataError
from genrec_core.extract.job import run_extract
from genrec_core.storage import Storage
from tests.support import RUN_DATE, make_settings, quarantine_rows, vocab_ids

pytestmark = pytest.mark.integration

HEADER = "user_id,item_id,event_type,event_ts,value"


def _daily(uri: str) -> pd.DataFrame:
    table = pq.read_table(uri.removeprefix("file://") + "/daily").to_pandas()
    table["day"] = table["day"].astype(str)
    return table.sort_values(["day", "user_idx", "item_idx"]).reset_index(drop=True)


def _as_text(tiny_log_dir, dest, fmt: str) -> None:
    """Rewrite the parquet log as CSV or JSON Lines (timestamps as ISO text, microseconds kept)."""
    for part in sorted(tiny_log_dir.iterdir()):
        df = pq.read_table(part).to_pandas()
        (dest / part.name).mkdir(parents=True)
        stamps = [t.isoformat().replace("+00:00", "Z") for t in df.event_ts]
        if fmt == "csv":
            lines = [HEADER] + [
                f"{u},{i},{e},{t},{'' if pd.isna(v) else repr(float(v))}"
                for u, i, e, t, v in zip(df.user_id, df.item_id, df.event_type, stamps, df.value)
            ]
            (dest / part.name / "part-0.csv").write_text("\n".join(lines) + "\n")
        else:
            lines = [
                json.dumps(
                    {
                        "user_id": u,
                        "item_id": i,
                        "event_type": e,
                        "event_ts": t,
                        "value": None if pd.isna(v) else float(v),
                    }
                )
                for u, i, e, t, v in zip(df.user_id, df.item_id, df.event_type, stamps, df.value)
            ]
            (dest / part.name / "part-0.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def parquet_run(tiny_log_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("parquet-run")
    result = run_extract(make_settings(tiny_log_dir.as_uri(), out.as_uri()), RUN_DATE, Storage())
    return result


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_formats_give_the_same_extract_as_parquet(fmt, parquet_run, tiny_log_dir, tmp_path):
    events = tmp_path / "events"
    _as_text(tiny_log_dir, events, fmt)
    day = events / f"dt={RUN_DATE}"
    bad = {
        "csv": [
            "u0000001,i000001,view,not-a-time,",
            "u0000001,i000001,purchase,2026-11-20T10:00:00Z,lots",
            ",i000002,view,2026-11-20T10:00:00Z,",
        ],
        "jsonl": [
            '{"user_id": "u0000001", "item_id": "i000001", "event_type": "view", "event_ts": "yesterday"}',
            '{"user_id": "u0000001", "item_id": "i000001", "event_type": "purchase", '
            '"event_ts": "2026-11-20T10:00:00Z", "value": "lots"}',
            '{"item_id": "i000002", "event_type": "view", "event_ts": "2026-11-20T10:00:00Z"}',
            '{"user_id": "u0000001", "item_id": ',
        ],
    }[fmt]
    suffix = "csv" if fmt == "csv" else "jsonl"
    (day / f"part-bad.{suffix}").write_text((HEADER + "\n" if fmt == "csv" else "") + "\n".join(bad) + "\n")
    out = tmp_path / "out"
    result = run_extract(
        make_settings(events.as_uri(), out.as_uri(), extract={"format": fmt}, max_rejected_share=0.1),
        RUN_DATE,
        Storage(),
    )
    expected = {"bad_timestamp": 1, "bad_value": 1, "empty_user_id": 1}
    if fmt == "jsonl":
        expected["malformed_record"] = 1
    assert result.stats["rejected_by_reason"] == expected
    assert result.stats["events_read"] == parquet_run.stats["events_read"] + len(bad)
    pd.testing.assert_frame_equal(_daily(result.uri), _daily(parquet_run.uri))
    assert vocab_ids(result.uri, "users") == vocab_ids(parquet_run.uri, "users")
    quarantine = quarantine_rows(out)
    assert len(quarantine) == len(bad) and quarantine.source_file.str.endswith(f"part-bad.{suffix}").all()


def test_csv_line_with_wrong_field_count_is_quarantined_as_malformed(tiny_log_dir, tmp_path):
    events = tmp_path / "events"
    _as_text(tiny_log_dir, events, "csv")
    (events / f"dt={RUN_DATE}" / "part-bad.csv").write_text(
        HEADER + "\nu0000001,i000001,view\nu0000001,i000001,view,2026-11-20T10:00:00Z,,surplus\n"
    )
    result = run_extract(
        make_settings(events.as_uri(), (tmp_path / "out").as_uri(), extract={"format": "csv"}), RUN_DATE, Storage()
    )
    assert result.stats["rejected_by_reason"] == {"malformed_record": 2}


def test_hostile_partitions(tiny_log_dir, tmp_path):
    """Mixed good and bad rows, an empty and a missing partition, an extra column, a file without `value`,
    and a file whose timestamp column drifted to integers: a successful run with exact quarantine counts."""
    events = tmp_path / "events"
    shutil.copytree(tiny_log_dir, events)
    shutil.rmtree(events / "dt=2026-11-16")  # missing partition
    for f in (events / "dt=2026-11-17").iterdir():  # empty partition
        f.unlink()
    schema = pq.read_schema(next((tiny_log_dir / "dt=2026-11-17").iterdir()))
    pq.write_table(schema.empty_table(), events / "dt=2026-11-17" / "part-empty.parquet")
    day = events / f"dt={RUN_DATE}"
    ts = pa.array([dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)] * 2, pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table(
            {
                "user_id": ["u-extra", "u-extra"],
                "item_id": ["i000001", "i000002"],
                "event_type": ["view", "click"],
                "event_ts": ts,
                "value": [None, None],
                "campaign": ["x", "y"],
            }
        ),
        day / "part-extra-column.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "user_id": ["u-novalue", "u-novalue"],
                "item_id": ["i000001", "i000003"],
                "event_type": ["purchase", "rating"],
                "event_ts": ts,
            }
        ),
        day / "part-no-value.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "user_id": ["u-drift"] * 3,
                "item_id": ["i000001"] * 3,
                "event_type": ["view"] * 3,
                "event_ts": [1763629200, 1763629201, 1763629202],
                "value": [None] * 3,
            }
        ),
        day / "part-drift.parquet",
    )
    result = run_extract(make_settings(events.as_uri(), (tmp_path / "out").as_uri()), RUN_DATE, Storage())
    stats = result.stats
    # the rating without a value is rejected; the drifted file is quarantined whole
    assert stats["rejected_by_reason"] == {"bad_value": 1, "schema_drift": 3}
    assert stats["days_missing"] == ["2026-11-16"] and "2026-11-17" in stats["days_present"]
    assert stats["per_day"]["2026-11-17"]["events_read"] == 0
    users = vocab_ids(result.uri, "users")
    assert "u-extra" in users and "u-novalue" in users and "u-drift" not in users
    drift = quarantine_rows(tmp_path / "out").query("reason == 'schema_drift'")
    assert list(drift.event_ts_raw) == ["1763629200", "1763629201", "1763629202"]


def test_missing_required_column_names_the_file_and_column(tiny_log_dir, tmp_path):
    events = tmp_path / "events"
    shutil.copytree(tiny_log_dir, events)
    pq.write_table(
        pa.table({"user_id": ["u1"], "item_id": ["i1"], "event_type": ["view"]}),
        events / "dt=2026-11-18" / "part-no-ts.parquet",
    )
    with pytest.raises(DataError, match=r"dt=2026-11-18/part-no-ts\.parquet: required column\(s\) \['event_ts'\]"):
        run_extract(make_settings(events.as_uri(), (tmp_path / "out").as_uri()), RUN_DATE, Storage())


def test_unreadable_file_names_the_file(tiny_log_dir, tmp_path):
    events = tmp_path / "events"
    shutil.copytree(tiny_log_dir, events)
    (events / f"dt={RUN_DATE}" / "part-junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"part-junk\.parquet: not a readable Parquet file"):
        run_extract(make_settings(events.as_uri(), (tmp_path / "out").as_uri()), RUN_DATE, Storage())
