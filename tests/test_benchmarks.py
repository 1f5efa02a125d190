"""Smoke runs of the benchmarks at toy sizes, so they keep working as the code changes (figures are not judged)."""

from __future__ import annotations

import pytest

from genrec_core.dev.benchmarks import extract_bench, publish_bench, quality_bench, scoring_bench

pytestmark = pytest.mark.integration


def test_publish_benchmark_runs(postgres, pg_dsn):
    result = publish_bench.run(pg_dsn, rows=20_000, readers=2, to_sql_rows=2_000, part_rows=5_000, settle_s=0.2)
    assert result["rows"] == 20_000 and result["lookups"] > 0 and result["lookups_with_no_rows"] == 0
    for key in ("publish_rows_per_s", "copy_floor_rows_per_s", "to_sql_rows_per_s", "lookup_p50_ms", "lookup_p99_ms"):
        assert result[key] > 0, key


def test_extract_benchmark_runs():
    result = extract_bench.run(users=2_000, items=300, days=3, driver_memory="1g")
    assert result["events"] > 0 and result["incremental_day_events"] > 0
    for key in ("full_events_per_s", "incremental_events_per_s", "floor_events_per_s", "ratio", "driver_peak_rss_mb"):
        assert result[key] > 0, key


def test_scoring_benchmark_runs():
    result = scoring_bench.run(users=3_000, items=400, chunk=500, floor_users=1_000)
    assert result["users"] == 3_000 and result["rows"] == 30_000
    assert result["pipeline_users_per_s"] > 0 and result["floor_users_per_s"] > 0


@pytest.mark.skipif(not (quality_bench.data_root() / "ml-100k").is_dir(), reason="shared data sets not present")
def test_quality_benchmark_runs_on_shared_data():
    (result,) = quality_bench.run("ml-100k", ["popularity"], threads=1)
    assert result["model"] == "popularity" and "error" not in result
    assert 0.1 < result["metrics"]["recall@20"] < 0.3  # the classic most-popular level on ML-100K
