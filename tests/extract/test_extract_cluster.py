"""The extract as a spark-submit application on a real Spark standalone cluster (master + worker on loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import genrec_core.extract.main as extract_main
from genrec_core.dev.services.spark_standalone import SparkStandalone
from genrec_core.extract.job import run_extract
from genrec_core.storage import Storage
from tests.support import RUN_DATE, TINY, make_settings

pytestmark = pytest.mark.integration


def _daily(root: Path) -> pd.DataFrame:
    df = pq.read_table(root / "daily").to_pandas()
    df["day"] = df["day"].astype(str)
    return df.sort_values(["day", "user_idx", "item_idx"]).reset_index(drop=True)


def test_spark_submit_on_a_standalone_cluster_matches_local_mode(tiny_log_dir, tmp_path):
    local = run_extract(make_settings(tiny_log_dir.as_uri(), (tmp_path / "local").as_uri()), RUN_DATE, Storage())
    env = {
        "GENREC_EVENTS_URI": tiny_log_dir.as_uri(),
        "GENREC_OUTPUT_URI": (tmp_path / "cluster").as_uri(),
        "GENREC_LOOKBACK_DAYS": str(TINY.days),
    }
    with SparkStandalone(cores=1, memory="1g") as cluster:
        assert cluster.alive_workers() == 1
        done = cluster.submit(extract_main.__file__, ["--run-date", str(RUN_DATE)], env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        # the executors really ran on the worker: its work dir holds this application's logs
        apps = list((cluster.base / "work").glob("app-*"))
        assert len(apps) == 1, done.stderr[-3000:]
        bad = cluster.submit(extract_main.__file__, ["--run-date", "2026-12-31"], env=env)
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed["stats"]["events_read"] == local.stats["events_read"] and printed["stats"]["mode"] == "full"
    root = tmp_path / "cluster" / "extract" / f"dt={RUN_DATE}"
    pd.testing.assert_frame_equal(_daily(root), _daily(Path(local.uri.removeprefix("file://"))))
    # spark-submit's Python runner merges the driver's stderr into stdout
    assert bad.returncode == 2 and "no raw events for run date 2026-12-31" in bad.stdout + bad.stderr


def test_airflow_extract_goes_through_spark_submit_when_a_connection_is_set(tiny_log_dir, tmp_path, monkeypatch):
    import os
    import sys

    from genrec_airflow import spark as airflow_spark

    settings = make_settings(tiny_log_dir.as_uri(), (tmp_path / "out").as_uri())
    env = airflow_spark.settings_env(settings)
    assert env["GENREC_LOOKBACK_DAYS"] == str(TINY.days) and json.loads(env["GENREC_MULT_VAE"])["epochs"] > 0
    with SparkStandalone(cores=1, memory="1g") as cluster:
        monkeypatch.setenv(
            "AIRFLOW_CONN_GENREC_SPARK",
            json.dumps({"conn_type": "spark", "host": "spark://127.0.0.1", "port": cluster.port}),
        )
        monkeypatch.setenv("GENREC_SPARK_CONN_ID", "genrec_spark")
        monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        for key, value in cluster.env().items():
            if key.startswith(("SPARK_", "PYSPARK_")):
                monkeypatch.setenv(key, value)
        result = airflow_spark.extract(settings, RUN_DATE)
        assert len(list((cluster.base / "work").glob("app-*"))) == 1  # it ran on the cluster
    assert result.stats["events_read"] > 0 and result.extract_uri.endswith(f"dt={RUN_DATE}")
