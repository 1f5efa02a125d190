"""A whole nightly run in-process and through Airflow's `dag.test()`, against real Postgres, S3 endpoint and Spark."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from pydantic import SecretStr

from genrec_core.dev.generate import generate_logs
from genrec_core.pipeline import run_nightly
from genrec_core.publish.lake import Lake
from genrec_core.storage import join
from tests.support import (
    RUN_DATE,
    S3_KEYS,
    TINY,
    assert_lists_are_complete_and_unseen,
    fetch,
    make_settings,
    seen_pairs,
)

pytestmark = pytest.mark.integration


@pytest.fixture()
def s3_settings(s3_endpoint, s3_bucket, s3_storage, pg_dsn):
    events = join(s3_bucket, "events")
    generate_logs(TINY, events, s3_storage)
    s3 = {"endpoint_url": s3_endpoint, **S3_KEYS}
    return make_settings(events, join(s3_bucket, "output"), s3=s3, pg_dsn=SecretStr(pg_dsn))


def test_nightly_run_over_s3_and_postgres(s3_settings, s3_storage):
    settings = s3_settings
    dsn = settings.pg_dsn.get_secret_value()
    summary = run_nightly(settings, RUN_DATE)

    # a named model; its linear expert is on by default when the catalogue fits (expert_max_items)
    assert summary["run_date"] == "2026-11-20" and summary["model"] == "mult_vae+ease"
    assert summary["events_read"] > 0 and summary["events_rejected"] == 0
    assert 0.0 <= summary["metrics"]["ndcg@10"] <= 1.0 and summary["metrics"]["users_evaluated"] > 0

    recs = fetch(dsn, "SELECT * FROM genrec.recommendations_latest")
    seen = seen_pairs(s3_storage, settings.events_uri, RUN_DATE, TINY.days)
    assert_lists_are_complete_and_unseen(recs, seen, settings.k)
    assert summary["rows_published"] == len(recs) == settings.k * len({u for u, _ in seen})

    lake = Lake(s3_storage, settings.output_uri)
    assert lake.read_date(RUN_DATE).num_rows == len(recs) == lake.publications()[RUN_DATE].rows
    assert lake.serving_date() == RUN_DATE
    for name in (
        "models/mult_vae/dt=2026-11-20/weights.pt",
        "runs/dt=2026-11-20/summary.json",
        "extract/dt=2026-11-20/stats.json",
    ):
        assert s3_storage.exists(join(settings.output_uri, name)), name

    # A rerun of the same date reproduces the same lists exactly and replaces the partition.
    again = run_nightly(settings, RUN_DATE)
    recs_again = fetch(dsn, "SELECT * FROM genrec.recommendations_latest")
    key = ["user_id", "rank"]
    pd.testing.assert_frame_equal(
        recs.sort_values(key).reset_index(drop=True), recs_again.sort_values(key).reset_index(drop=True)
    )
    assert again["metrics"] == summary["metrics"]
    runs = fetch(dsn, "SELECT run_date, status FROM genrec.runs")
    assert len(runs) == 2 and (runs.status == "published").all()


def test_dag_folder_imports_without_errors(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from genrec_core.dev.paths import PROJECT_ROOT

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("genrec_nightly")
    assert dag is not None
    assert {t.task_id for t in dag.tasks} == {
        "extract",
        "check_data",
        "train",
        "evaluate",
        "gate",
        "shard_plan",
        "score",
        "scoring_done",
        "publish_object_store",
        "publish_postgres",
        "record_run",
    }
    tasks = {t.task_id: t for t in dag.tasks}
    assert {tid for tid, t in tasks.items() if t.queue == "gpu"} == {"train", "gate", "score"}
    assert tasks["gate"].retries == 0 and tasks["extract"].retries == 2
    assert [o.name for o in tasks["publish_postgres"].outlets] == ["genrec_recommendations"]
    assert tasks["gate"].upstream_task_ids == {"extract", "train", "evaluate"}
    assert "gate" in tasks["score"].upstream_task_ids
    assert bag.get_dag("genrec_watchdog") is not None
    consumer = bag.get_dag("genrec_consumer_example")
    assert consumer is not None and "genrec_recommendations" in str(consumer.timetable.asset_condition)


def test_dag_test_publishes_day_d(airflow_db, s3_settings, s3_storage, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from genrec_core.dev.paths import PROJECT_ROOT

    settings = s3_settings
    # Postgres and S3 come from Airflow connections, resolved in the tasks with the provider hooks.
    s3_conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": settings.s3.endpoint_url, "region_name": "us-east-1"},
    }
    env = {
        "GENREC_EVENTS_URI": settings.events_uri,
        "GENREC_OUTPUT_URI": settings.output_uri,
        "AIRFLOW_CONN_GENREC_POSTGRES": settings.pg_dsn.get_secret_value(),
        "AIRFLOW_CONN_GENREC_S3": json.dumps(s3_conn),
        "GENREC_LOOKBACK_DAYS": str(TINY.days),
        "GENREC_SPARK_MASTER": "local[2]",
        "GENREC_SPARK_DRIVER_MEMORY": "1g",
        "GENREC_TORCH_THREADS": "2",
    }
    monkeypatch.delenv("GENREC_PG_DSN", raising=False)
    for section in ("mult_vae", "sasrec"):  # the test's small networks (the selection trains every candidate)
        for name, value in getattr(settings, section).model_dump(exclude_none=True).items():
            env[f"GENREC_{section.upper()}__{name.upper()}"] = str(value)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).get_dag("genrec_nightly")
    assert dag.params["model"] == "auto"  # the default: choose the served model on every full retrain
    # Two consecutive nights, D-1 then D; each triggered when its day has ended (its data interval is the day).
    for day in (RUN_DATE - dt.timedelta(days=1), RUN_DATE):
        after = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        run = dag.test(logical_date=after)
        assert str(run.state) in ("success", "DagRunState.SUCCESS"), day
        assert run.data_interval_start.date() == day
        # the object store's record of the date names the Airflow run that published it (and so does its commit)
        assert Lake(s3_storage, settings.output_uri).publications()[day].run_id == run.run_id
    # D-1 selected the served model on D-2 and trained it from scratch; D, with D-1 published, continued that
    # winner (a fine-tune, or a closed-form refit) without selecting again
    line = join(settings.output_uri, "models", "auto")
    plans = {
        day: s3_storage.read_json(join(line, f"dt={day}", "training.json")) for day in ("2026-11-19", "2026-11-20")
    }
    assert plans["2026-11-19"]["mode"] == "retrain" and plans["2026-11-19"]["select"]
    assert not plans["2026-11-20"]["select"] and plans["2026-11-20"]["base_uri"] == join(line, "dt=2026-11-19")
    selection = s3_storage.read_json(join(line, "dt=2026-11-19", "selection.json"))
    winner = selection["winner"]
    assert selection["validation_day"] == "2026-11-18" and selection["selected_on"] == "2026-11-19"
    statuses = {c["name"]: c["status"] for c in selection["candidates"]}
    assert {"ease", "item_knn", "popularity", "mult_vae", "mult_vae+ease", "sasrec", "transitions"} <= set(statuses)
    assert winner in statuses
    assert s3_storage.read_json(join(line, "dt=2026-11-20", "selection.json"))["winner"] == winner

    dsn = settings.pg_dsn.get_secret_value()
    recs = fetch(dsn, "SELECT * FROM genrec.recommendations WHERE run_date = %s", RUN_DATE)
    seen = seen_pairs(s3_storage, settings.events_uri, RUN_DATE, TINY.days)
    assert_lists_are_complete_and_unseen(recs, seen, settings.k)
    summary = s3_storage.read_json(join(settings.output_uri, "runs", "dt=2026-11-20", "summary.json"))
    assert summary["rows_published"] == len(recs)
    # nothing dated after D was produced
    assert sorted(Lake(s3_storage, settings.output_uri).publications()) == [dt.date(2026, 11, 19), RUN_DATE]
    # D's gate compared against the model published for D-1, and against the strongest closed-form baseline
    assert summary["gate"]["passed"] and summary["gate"]["champion_version"] == f"{winner}@2026-11-19"
    assert summary["gate"]["baseline"] in ("ease", "item_knn", "transitions") and summary["model"] == winner
    assert summary["selection"] == {"winner": winner, "selected_on": "2026-11-19"}
    assert {"extract", "train", "evaluate", "gate", "score", "publish_object_store", "publish_postgres"} <= set(
        summary["stages"]
    )
    runs = fetch(dsn, "SELECT run_date, selection, stages FROM genrec.runs ORDER BY run_date")
    assert runs.selection[0]["winner"] == winner and len(runs.selection[0]["candidates"]) == len(statuses)
    assert runs.stages[1]["train"]["seconds"] > 0 and runs.stages[1]["extract"]["seconds"] > 0
    assert all(stage["seconds"] >= 0 and stage["peak_rss_mb"] > 0 for stage in runs.stages[1].values())
    # the publish updated the Asset, with the run date for consumers
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = [e.extra for e in session.query(AssetEvent).all()]
    assert {"run_date": "2026-11-20", "rows": len(recs), "model_version": f"{winner}@2026-11-20"} in events
