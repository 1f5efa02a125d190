"""Smoke runs of the benchmarks at toy sizes, so they keep working as the code changes (figures are not judged)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from genrec_core.dev.benchmarks import (
    extract_bench,
    publish_bench,
    quality_bench,
    scale_bench,
    scoring_bench,
    table_bench,
)

pytestmark = pytest.mark.integration


def test_publish_benchmark_runs(postgres, pg_dsn):
    result = publish_bench.run(pg_dsn, rows=20_000, readers=2, to_sql_rows=2_000, part_rows=5_000, settle_s=0.2)
    assert result["rows"] == 20_000 and result["lookups"] > 0 and result["lookups_with_no_rows"] == 0
    for key in ("publish_rows_per_s", "copy_floor_rows_per_s", "to_sql_rows_per_s", "lookup_p50_ms", "lookup_p99_ms"):
        assert result[key] > 0, key


def test_object_store_publish_benchmark_runs():
    result = table_bench.run(rows=20_000, part_rows=5_000, lookups=3)
    assert result["rows"] == 20_000 and result["target"] == "object-store"
    for layout in ("table", "manifest_layout"):
        assert result["reads"][layout]["full_read_rows"] == 20_000 and result["reads"][layout]["lookup_median_ms"] > 0
    assert result["table_rows_per_s"] > 0 and result["plain_parquet_rows_per_s"] > 0


def test_extract_benchmark_runs():
    result = extract_bench.run(users=2_000, items=300, days=3, driver_memory="1g")
    assert result["events"] > 0 and result["incremental_day_events"] > 0
    for key in ("full_events_per_s", "incremental_events_per_s", "floor_events_per_s", "ratio", "driver_peak_rss_mb"):
        assert result[key] > 0, key


def test_scoring_benchmark_runs():
    result = scoring_bench.run(users=3_000, items=400, chunk=500, floor_users=1_000)
    assert result["users"] == 3_000 and result["rows"] == 30_000
    assert result["pipeline_users_per_s"] > 0 and result["floor_users_per_s"] > 0


def test_scale_data_is_deterministic_and_split_without_overlap():
    one, two = scale_bench.draw(300, 150, 30, seed=3), scale_bench.draw(300, 150, 30, seed=3)
    for part in ("fit", "valid", "test"):
        assert (getattr(one, part) != getattr(two, part)).nnz == 0
    total = one.fit.nnz + one.valid.nnz + one.test.nnz
    assert one.fit.multiply(one.test).nnz == 0 and one.valid.multiply(one.test).nnz == 0
    assert 0.6 < one.fit.nnz / total < 0.8 and 0.15 < one.test.nnz / total < 0.25
    lists = scale_bench.oracle_lists(one.truth, np.arange(150), one.history, k=10)
    assert one.history[np.repeat(np.arange(150), 10), lists.ravel()].sum() == 0  # never a seen item


def test_scale_benchmark_runs_and_the_oracle_leads():
    labels = frozenset(["popularity", "sansa", "ease", "mult_vae/full", "mult_vae/sampled"])
    plan = scale_bench.ScalePlan(300, 25, 1, 2, 1, labels, {"sansa": {"weights_per_item": 20}})
    result = scale_bench.run([400], plan)
    (case,) = result["cases"]
    rows = {row["label"]: row for row in case["rows"]}
    assert set(rows) == {"popularity", "sansa", "ease", "mult_vae/full", "mult_vae/sampled"}
    assert all("error" not in row for row in rows.values()), rows
    best = case["best_achievable"]["recall@20"]
    assert all(0 < row["recall@20"] <= best for row in rows.values())  # nothing beats the posterior predictive
    assert rows["mult_vae/sampled"]["sampled_softmax"] and not rows["mult_vae/full"]["sampled_softmax"]
    assert rows["mult_vae/full"]["epochs_run"] <= 2 and rows["mult_vae/full"]["epoch_seconds"] > 0
    assert all(row["scoring_users_per_s"] > 0 and row["peak_rss_mb"] > 0 for row in rows.values())
    assert set(case["checks"]) == {"sampled_vs_full", "sansa_vs_ease"}
    assert rows["sansa"]["settings"] == {"weights_per_item": 20} and result["settings"] == plan.settings


def test_the_hybrid_is_checked_against_its_own_network_alone_when_measured():
    sansa = {"label": "sansa", "recall@20": 0.09}
    plain = {"label": "mult_vae/sampled", "recall@20": 0.12}
    hybrid = {"label": "mult_vae+expert", "recall@20": 0.11, "sampled_softmax": True, "expert": "SANSA"}
    own = {**hybrid, "network_alone": {"recall@20": 0.10, "ndcg@20": 0.08}}
    assert scale_bench.checks([sansa, plain, hybrid])["hybrid_vs_parts"]["beats_both"] is False
    parts = scale_bench.checks([sansa, plain, own])["hybrid_vs_parts"]
    assert parts == {"hybrid": 0.11, "network": 0.10, "expert": 0.09, "beats_both": True}


def test_scale_rows_follow_the_catalogue_size():
    plan = scale_bench.ScalePlan(epochs=5)
    assert {row.label for row in scale_bench.rows_for(20_000, plan)} >= {"ease", "mult_vae/full", "sansa"}
    wide = scale_bench.rows_for(1_000_000, plan)
    assert "ease" not in {row.label for row in wide} and "mult_vae/full" not in {row.label for row in wide}
    assert all("hidden_dim" not in row.settings for row in wide)  # the VAEs' defaults narrow them at 1M items


@pytest.mark.skipif(not (quality_bench.data_root() / "ml-100k").is_dir(), reason="shared data sets not present")
def test_quality_benchmark_runs_on_shared_data():
    (result,) = quality_bench.run("ml-100k", ["popularity"], threads=1)
    assert result["model"] == "popularity" and "error" not in result
    assert 0.1 < result["metrics"]["recall@20"] < 0.3  # the classic most-popular level on ML-100K


def test_sequences_split_leave_one_out_in_time_order(tmp_path):
    """Both published formats: `user item` pairs a line (gzip), and one user a line; ids 1-based."""
    pairs = tmp_path / "pairs.txt.gz"
    with gzip.open(pairs, "wt") as out:
        out.write("1 3\n1 1\n1 4\n1 2\n2 2\n2 4\n2 1\n")
    lines = tmp_path / "lines.txt"
    lines.write_text("1 3 1 4 2\n2 2 4 1\n")
    for path in (pairs, lines):
        sequences = quality_bench.read_sequences(path)
        assert sequences == [[2, 0, 3, 1], [1, 3, 0]]
        split = quality_bench.leave_one_out("toy", sequences)
        assert split.test.toarray().tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]  # the last items
        assert split.valid.toarray().tolist() == [[0, 0, 0, 1], [0, 0, 0, 1]]  # the ones before them
        assert split.fit.toarray().tolist() == [[1, 0, 1, 0], [0, 1, 0, 0]]
        assert (split.train - split.fit - split.valid).nnz == 0  # history at test time: all but the last


def test_the_command_line_offers_every_quality_data_set():
    from genrec_core.cli import QUALITY_DATASETS

    assert QUALITY_DATASETS == quality_bench.DATASETS
