"""
### genrec_nightly

Nightly batch recommendations for run date **D** = the day this run's data interval
covers (`data_interval_start`). A run triggered at time T (nightly, manual or
`airflow dags test genrec_nightly T`) processes the last complete day before T;
a backfill of logical dates D1..D2 processes exactly those days.

extract (Spark, partitions through D) -> data checks -> train (days before D; `mode`:
fine-tune from the model of D-1 or full retrain, see genrec_core/train/plan.py; with
`model = auto` a full retrain first selects the served model on D-1, see
genrec_core/train/selection.py) -> evaluate (held-out day D) -> quality gate (beat
popularity, stay within a margin of the strongest closed-form baseline and of the
model published for D-1) -> score (mapped over shards) -> publish S3, then
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
other the stages' typed results (genrec_core/handoffs.py) as plain JSON through XCom.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from genrec_airflow.assets import RECOMMENDATIONS
from genrec_airflow.notifiers import GenrecNotifier
from genrec_core.config import AUTO, configured_values
from genrec_core.models.registry import model_names

GPU_QUEUE = os.environ.get("GENREC_GPU_QUEUE", "gpu")
# Param defaults are the configured settings (GENREC_* / TOML), so a scheduled run uses them as they are.
CONFIGURED = configured_values("model", "train.mode", "k", "lookback_days", "force_publish")

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
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["genrec", "recommendations"],
    doc_md=__doc__,
    params={
        "model": Param(
            CONFIGURED["model"],
            type="string",
            enum=[AUTO, *model_names()],
            description="auto: choose the served model on every full retrain (judged on the day before D); "
            "or a model to train",
        ),
        "mode": Param(
            CONFIGURED["train.mode"],
            type="string",
            enum=["auto", "finetune", "retrain"],
            description="auto: fine-tune from the model of D-1 unless a full retrain is due "
            "(weekly, vocabulary growth, or yesterday's model lost the gate)",
        ),
        "k": Param(CONFIGURED["k"], type="integer", minimum=1, maximum=1000, description="List length per user"),
        "lookback_days": Param(
            CONFIGURED["lookback_days"],
            type="integer",
            minimum=2,
            maximum=3650,
            description="Days of logs in the window",
        ),
        "force_publish": Param(
            CONFIGURED["force_publish"],
            type="boolean",
            description="Publish even if the quality gate rejects (recorded as forced)",
        ),
    },
)
def genrec_nightly() -> None:
    @task
    def extract(**context) -> dict:
        from genrec_airflow import runtime, spark

        return spark.extract(runtime.settings(context), runtime.run_date(context)).to_xcom()

    @task(retries=0)  # the data will not change on a retry: fix it (or the settings) and clear the task
    def check_data(extracted: dict, **context) -> None:
        from genrec_airflow import runtime
        from genrec_core import pipeline
        from genrec_core.handoffs import Extracted

        pipeline.check_data(runtime.settings(context), Extracted.from_xcom(extracted))

    @task(queue=GPU_QUEUE)
    def train(extracted: dict, **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline
        from genrec_core.handoffs import Extracted

        return pipeline.train(
            runtime.settings(context), runtime.run_date(context), Extracted.from_xcom(extracted)
        ).to_xcom()

    @task
    def evaluate(extracted: dict, trained: dict, **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline
        from genrec_core.handoffs import Extracted, Trained

        return pipeline.evaluate(
            runtime.settings(context),
            runtime.run_date(context),
            Extracted.from_xcom(extracted),
            Trained.from_xcom(trained),
        ).to_xcom()

    @task(queue=GPU_QUEUE, retries=0)  # a rejection is a decision, not a transient failure
    def gate(extracted: dict, trained: dict, evaluation: dict, **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        record = runtime.run_record(context, extracted, trained, evaluation)
        return pipeline.gate(runtime.settings(context), runtime.run_date(context), record).to_xcom()

    @task
    def shard_plan(**context) -> list[int]:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        return pipeline.shard_plan(runtime.settings(context))

    @task(queue=GPU_QUEUE)
    def score(shard: int, extracted: dict, trained: dict, decision: dict, **context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline
        from genrec_core.handoffs import Extracted, Trained

        return pipeline.score(
            runtime.settings(context),
            runtime.run_date(context),
            Extracted.from_xcom(extracted),
            Trained.from_xcom(trained),
            shard,
        ).to_xcom()

    @task
    def scoring_done(shards: list[dict]) -> dict:
        from genrec_core.handoffs import Scored

        return Scored.combine([Scored.from_xcom(s) for s in shards]).to_xcom()

    @task
    def publish_object_store(
        extracted: dict, trained: dict, evaluation: dict, decision: dict, scored: dict, **context
    ) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        record = runtime.run_record(context, extracted, trained, evaluation, decision=decision, scored=scored)
        return pipeline.publish_object_store(runtime.settings(context), runtime.run_date(context), record).to_xcom()

    @task(outlets=[RECOMMENDATIONS])
    def publish_postgres(
        extracted: dict, trained: dict, evaluation: dict, decision: dict, scored: dict, objects: dict, **context
    ) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        record = runtime.run_record(
            context, extracted, trained, evaluation, decision=decision, scored=scored, objects=objects
        )
        run_date = runtime.run_date(context)
        published = pipeline.publish_postgres(runtime.settings(context), run_date, record)
        context["outlet_events"][RECOMMENDATIONS].extra = {
            "run_date": run_date.isoformat(),
            "rows": published.rows_published,
            "model_version": record.trained.version,
        }
        return published.to_xcom()

    @task
    def record_run(
        extracted: dict,
        trained: dict,
        evaluation: dict,
        decision: dict,
        scored: dict,
        objects: dict,
        postgres: dict,
        **context,
    ) -> str:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        record = runtime.run_record(
            context,
            extracted,
            trained,
            evaluation,
            decision=decision,
            scored=scored,
            objects=objects,
            postgres=postgres,
        )
        return pipeline.record_run(runtime.settings(context), record)

    extracted = extract()
    checks = check_data(extracted)
    trained = train(extracted)
    checks >> trained
    evaluation = evaluate(extracted, trained)
    decision = gate(extracted, trained, evaluation)
    shards = score.partial(extracted=extracted, trained=trained, decision=decision).expand(shard=shard_plan())
    scored = scoring_done(shards)
    objects = publish_object_store(extracted, trained, evaluation, decision, scored)
    postgres = publish_postgres(extracted, trained, evaluation, decision, scored, objects)
    record_run(extracted, trained, evaluation, decision, scored, objects, postgres)


genrec_nightly()
