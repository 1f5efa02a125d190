"""
### genrec_watchdog

Alerts when the lists for day D are still not published at the configured hour of D+1
(`GENREC_WATCHDOG_CRON`, default 06:00 UTC): it checks D's row in the object store's
`publications` table, the same thing readers trust, and notifies through `GenrecNotifier`
(event `late`) when it is missing.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import CronDataIntervalTimetable, dag, task


@dag(
    dag_id="genrec_watchdog",
    # The run at 06:00 on D+1 covers [D 06:00, D+1 06:00): D = data_interval_start's date.
    schedule=CronDataIntervalTimetable(os.environ.get("GENREC_WATCHDOG_CRON", "0 6 * * *"), timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    tags=["genrec", "alerts"],
    doc_md=__doc__,
    default_args={"owner": "genrec", "retries": 0},
)
def genrec_watchdog() -> None:
    @task
    def check_published(**context) -> dict:
        from genrec_airflow import runtime
        from genrec_airflow.notifiers import GenrecNotifier
        from genrec_core import pipeline

        run_date = runtime.run_date(context)
        published = pipeline.is_published(runtime.settings(context), run_date)
        if not published:
            GenrecNotifier("late").notify({**context, "reason": f"{run_date} is not published yet"})
        return {"run_date": run_date.isoformat(), "published": published}

    check_published()


genrec_watchdog()
