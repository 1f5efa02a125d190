"""
### genrec_consumer_example

An example downstream DAG: it runs whenever `genrec_nightly` publishes a date (it is
scheduled on the `genrec_recommendations` Asset) and reads that date's record in the
object store's `publications` Delta table, the way a product team's job would start from a
complete, published batch.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from genrec_airflow.assets import RECOMMENDATIONS


@dag(
    dag_id="genrec_consumer_example",
    schedule=[RECOMMENDATIONS],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    tags=["genrec", "example"],
    doc_md=__doc__,
)
def genrec_consumer_example() -> None:
    @task
    def read_published(**context) -> dict:
        from genrec_airflow import runtime
        from genrec_core import pipeline

        events = [e for evts in context["triggering_asset_events"].values() for e in evts]
        run_dates = sorted({e.extra["run_date"] for e in events if e.extra and "run_date" in e.extra})
        settings = runtime.settings(context)
        return {d: pipeline.published_record(settings, dt.date.fromisoformat(d)) for d in run_dates}

    read_published()


genrec_consumer_example()
