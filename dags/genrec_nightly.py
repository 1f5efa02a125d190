"""
### genrec_nightly

Nightly batch recommendations for run date **D** = the day this run's data interval
covers (`data_interval_start`). A run triggered at time T (nightly, manual or
`airflow dags test genrec_nightly T`) processes the last complete day before T;
a backfill of logical dates D1..D2 processes exactly those days.

extract (Spark, partitions through D) -> data checks -> train (days before D; `mode`:
fine-tune from the model of D-1 or full retrain, see genrec_core/training_plan.py) ->
evaluate (held-out day D) -> quality gate (beat popularity, stay within a margin of
the model published for D-1) -> score (mapped over shards) -> publish S3, then
Postgres (partition D, swapped in atomically; updates the `genrec_recommendations`
Asset) -> record run. A gate rejection publishes nothing: the previous lists stay
served and the run is recorded as `rejected` in `genrec.runs`.

Connections: `genrec_postgres`, `genrec_s3` (optional; else `GENREC_*` settings), and
the Spark connection named by `GENREC_SPARK_CONN_ID` (extract via spark-submit; unset:
local Spark in the task).
Train, gate and score run on the `gpu` queue (`GENREC_GPU_QUEUE`). Failures and gate
rejections alert through `GenrecNotifier`; `genrec_watchdog` alerts when D is still
unpublished at the configured hour.
Wiring only: every task is one call into `genrec_core.pipeline`; tasks hand each
other URIs and small summaries through XCom.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import get_args

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task
from genrec_airflow.assets import RECOMMENDATIONS
from genrec_airflow.notifiers import GenrecNotifier
from genrec_core.config import ModelName, configured_values

MODEL_NAMES = get_args(ModelName)

GPU_QUEUE = os.environ.get("GENREC_GPU_QUEUE", "gpu")
# Param defaults are the configured settings (GENREC_* / TOML), so a scheduled run uses them as they are.
CONFIGURED = configured_values("model", "train_mode", "k", "lookback_days", "force_publish")

DEFAULT_ARGS = {
    "owner": "genrec",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": dt.timedelta(hours=2),
    "on_failure_callback": [GenrecNotifier("failure")],
}


@dag(
    dag_id="genrec_nightly",
    # Midnight-aligned so each data interval is one calendar day D; the run fires when D ends.
    schedule=CronDataIntervalTimetable(os.environ.get("GENREC_SCHEDULE", "0 0 * * *"), timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["genrec", "recommendations"],
    doc_md=__doc__,
    params={
        "model": Param(CONFIGURED["model"], type="string", enum=list(MODEL_NAMES), description="Model to train"),
        "mode": Param(CONFIGURED["train_mode"], type="string", enum=["auto", "finetune", "retrain"],
                      description="auto: fine-tune from the model of D-1 unless a full retrain is due "
                                  "(weekly, vocabulary growth, or yesterday's model lost the gate)"),
        "k": Param(CONFIGURED["k"], type="integer", minimum=1, maximum=1000, description="List length per user"),
        "lookback_days": Param(CONFIGURED["lookback_days"], type="integer", minimum=2, maximum=3650, description="Days of logs in the window"),
        "force_publish": Param(CONFIGURED["force_publish"], type="boolean",
                               description="Publish even if the quality gate rejects (recorded as forced)"),
    },
)
def genrec_nightly() -> None:
    @task
    def extract(**context) -> dict:
        from genrec_airflow import runtime, spark

        return spark.extract(runtime.settings(context), runtime.run_date(context))

    @task(retries=0)  # the data will not change on a retry: fix it (or the settings) and clear the task
    def check_data(extracted: dict, **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        return pipeline.check_data(runtime.settings(context), extracted["stats"])

    @task(queue=GPU_QUEUE)
    def train(extracted: dict, checks: dict, **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        return pipeline.train(runtime.settings(context), runtime.run_date(context), extracted["extract_uri"])

    @task
    def evaluate(extracted: dict, trained: dict, **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        return pipeline.evaluate(runtime.settings(context), runtime.run_date(context), extracted["extract_uri"],
                                 trained["model_uri"])

    @task(queue=GPU_QUEUE, retries=0)  # a rejection is a decision, not a transient failure
    def gate(extracted: dict, trained: dict, evaluation: dict, **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        record = {"model": trained["model"], "model_version": pipeline.model_version(trained),
                  "artifacts": {"extract": extracted["extract_uri"], "model": trained["model_uri"]},
                  "started_at": context["dag_run"].start_date.isoformat() if context["dag_run"].start_date else None}
        return pipeline.gate(runtime.settings(context), runtime.run_date(context), evaluation, record)

    @task
    def shard_plan(**context) -> list[int]:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        return pipeline.shard_plan(runtime.settings(context))

    @task(queue=GPU_QUEUE)
    def score(shard: int, extracted: dict, trained: dict, decision: dict, **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        return pipeline.score(runtime.settings(context), runtime.run_date(context), extracted["extract_uri"],
                              trained["model_uri"], shard)

    @task
    def scoring_done(shards: list[dict], **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        return {"scored_uri": pipeline.scored_uri_for(runtime.settings(context), runtime.run_date(context)),
                "rows": sum(s["rows"] for s in shards), "users": sum(s["users"] for s in shards)}

    @task
    def publish_object_store(scored: dict, trained: dict, **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        return pipeline.publish_object_store(
            runtime.settings(context), runtime.run_date(context), scored["scored_uri"],
            {"model": trained["model"], "model_uri": trained["model_uri"],
             "model_version": pipeline.model_version(trained)})

    @task(outlets=[RECOMMENDATIONS])
    def publish_postgres(scored: dict, trained: dict, evaluation: dict, decision: dict, extracted: dict,
                         **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        record = {"model": trained["model"], "model_version": pipeline.model_version(trained),
                  "metrics": {**evaluation["model"], "gate": decision},
                  "artifacts": {"extract": extracted["extract_uri"], "model": trained["model_uri"],
                                "scored": scored["scored_uri"]},
                  "started_at": context["dag_run"].start_date.isoformat() if context["dag_run"].start_date else None}
        run_date = runtime.run_date(context)
        published = pipeline.publish_postgres(runtime.settings(context), run_date, scored["scored_uri"], record)
        context["outlet_events"][RECOMMENDATIONS].extra = {
            "run_date": run_date.isoformat(), "rows": published["rows_published"],
            "model_version": record["model_version"]}
        return published

    @task
    def record_run(extracted: dict, trained: dict, evaluation: dict, decision: dict, scored: dict, s3: dict,
                   pg: dict, **context) -> str:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        settings, run_date = runtime.settings(context), runtime.run_date(context)
        uris = {"extract": extracted["extract_uri"], "model": trained["model_uri"], "scored": scored["scored_uri"],
                "recommendations": s3["uri"]}
        summary = pipeline.build_summary(run_date, settings, extracted, evaluation, pg["rows_published"], uris)
        summary["gate"] = decision
        return pipeline.record_run(settings, run_date, summary)

    extracted = extract()
    checks = check_data(extracted)
    trained = train(extracted, checks)
    evaluation = evaluate(extracted, trained)
    decision = gate(extracted, trained, evaluation)
    shards = score.partial(extracted=extracted, trained=trained, decision=decision).expand(shard=shard_plan())
    scored = scoring_done(shards)
    s3 = publish_object_store(scored, trained)
    pg = publish_postgres(scored, trained, evaluation, decision, extracted)
    s3 >> pg  # files first, then the Postgres swap that makes D the served date
    record_run(extracted, trained, evaluation, decision, scored, s3, pg)


genrec_nightly()
