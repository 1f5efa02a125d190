"""
### genrec_nightly

Nightly batch recommendations for run date **D** = the day this run's data interval
covers (`data_interval_start`). A run triggered at time T (nightly, manual or
`airflow dags test genrec_nightly T`) processes the last complete day before T;
a backfill of logical dates D1..D2 processes exactly those days.

Reads raw log partitions through D only, trains on the days before D, evaluates on D, scores every user with history through D and
publishes the lists to Postgres (`genrec.recommendations`, partition D) and to
`{output_uri}/recommendations/dt=D/`.

Wiring only: every task is one call into `genrec_core.pipeline`; tasks hand each
other URIs and small summaries through XCom.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

DEFAULT_ARGS = {
    "owner": "genrec",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": dt.timedelta(hours=2),
}


@dag(
    dag_id="genrec_nightly",
    # Midnight-aligned so each data interval is one calendar day D; the run fires when D ends.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    tags=["genrec", "recommendations"],
    doc_md=__doc__,
    params={
        "model": Param("mult_vae", type="string", enum=["mult_vae", "ease", "item_knn", "popularity"], description="Model to train"),
        "k": Param(10, type="integer", minimum=1, maximum=1000, description="List length per user"),
        "lookback_days": Param(30, type="integer", minimum=2, maximum=3650, description="Days of logs in the window"),
    },
)
def genrec_nightly() -> None:
    @task
    def extract(**context) -> dict:
        from genrec_core import orchestration, pipeline

        return pipeline.extract(orchestration.settings_for_run(context["params"]), orchestration.run_date_of(context))

    @task
    def check_data(extracted: dict, **context) -> dict:
        from genrec_core import orchestration, pipeline

        return pipeline.check_data(orchestration.settings_for_run(context["params"]), extracted["stats"])

    @task
    def train(extracted: dict, checks: dict, **context) -> dict:
        from genrec_core import orchestration, pipeline

        return pipeline.train(orchestration.settings_for_run(context["params"]), orchestration.run_date_of(context),
                              extracted["extract_uri"])

    @task
    def evaluate(extracted: dict, trained: dict, **context) -> dict:
        from genrec_core import orchestration, pipeline

        return pipeline.evaluate(orchestration.settings_for_run(context["params"]),
                                 orchestration.run_date_of(context), extracted["extract_uri"], trained["model_uri"])

    @task
    def shard_plan(**context) -> list[int]:
        from genrec_core import orchestration, pipeline

        return pipeline.shard_plan(orchestration.settings_for_run(context["params"]))

    @task
    def score(shard: int, extracted: dict, trained: dict, evaluation: dict, **context) -> dict:
        from genrec_core import orchestration, pipeline

        return pipeline.score(orchestration.settings_for_run(context["params"]), orchestration.run_date_of(context),
                              extracted["extract_uri"], trained["model_uri"], shard)

    @task
    def scoring_done(shards: list[dict], extracted: dict, **context) -> dict:
        from genrec_core import orchestration, pipeline

        return {"scored_uri": pipeline.scored_uri_for(orchestration.settings_for_run(context["params"]),
                                                      orchestration.run_date_of(context)),
                "rows": sum(s["rows"] for s in shards), "users": sum(s["users"] for s in shards)}

    @task
    def publish_object_store(scored: dict, trained: dict, **context) -> dict:
        from genrec_core import orchestration, pipeline

        return pipeline.publish_object_store(
            orchestration.settings_for_run(context["params"]), orchestration.run_date_of(context),
            scored["scored_uri"], {"model": trained["model"], "model_uri": trained["model_uri"],
                                   "model_version": pipeline.model_version(trained)})

    @task
    def publish_postgres(scored: dict, trained: dict, evaluation: dict, extracted: dict, **context) -> dict:
        from genrec_core import orchestration, pipeline

        record = {"model": trained["model"], "model_version": pipeline.model_version(trained),
                  "metrics": evaluation["model"],
                  "artifacts": {"extract": extracted["extract_uri"], "model": trained["model_uri"],
                                "scored": scored["scored_uri"]},
                  "started_at": context["dag_run"].start_date.isoformat() if context["dag_run"].start_date else None}
        return pipeline.publish_postgres(orchestration.settings_for_run(context["params"]),
                                         orchestration.run_date_of(context), scored["scored_uri"], record)

    @task
    def record_run(extracted: dict, trained: dict, evaluation: dict, scored: dict, s3: dict, pg: dict,
                   **context) -> str:
        from genrec_core import orchestration, pipeline

        settings = orchestration.settings_for_run(context["params"])
        run_date = orchestration.run_date_of(context)
        uris = {"extract": extracted["extract_uri"], "model": trained["model_uri"], "scored": scored["scored_uri"],
                "recommendations": s3["uri"]}
        summary = pipeline.build_summary(run_date, settings, extracted, evaluation, pg["rows_published"], uris)
        return pipeline.record_run(settings, run_date, summary)

    extracted = extract()
    checks = check_data(extracted)
    trained = train(extracted, checks)
    evaluation = evaluate(extracted, trained)
    shards = score.partial(extracted=extracted, trained=trained, evaluation=evaluation).expand(shard=shard_plan())
    scored = scoring_done(shards, extracted)
    s3 = publish_object_store(scored, trained)
    pg = publish_postgres(scored, trained, evaluation, extracted)
    s3 >> pg  # files first, then the Postgres swap that makes D the served date
    record_run(extracted, trained, evaluation, scored, s3, pg)


genrec_nightly()
