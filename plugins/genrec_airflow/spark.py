"""The extract through spark-submit when a Spark connection is configured, local mode otherwise.

Opt in with `GENREC_SPARK_CONN_ID` (e.g. `spark_default`, a Spark connection whose host
is the master URL, such as `spark://spark-master` with port 7077). The resolved settings
travel to the driver as `GENREC_*` variables in spark-submit's environment.
"""

from __future__ import annotations

import datetime as dt
import json
import os

from genrec_core.config import Settings
from genrec_core.handoffs import Extracted


def settings_env(settings: Settings) -> dict[str, str]:
    """`GENREC_*` variables that reproduce `settings` in another process (secrets included: pass, never log)."""
    values = settings.model_dump(mode="python")
    env = {}
    for name, value in values.items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, dict):
            value = json.dumps(
                {k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v) for k, v in value.items()}
            )
        env[f"GENREC_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def extract(settings: Settings, run_date: dt.date) -> Extracted:
    """Run the extract for D: spark-submit to the configured connection, or in-process local Spark."""
    from genrec_core import pipeline

    conn_id = os.environ.get("GENREC_SPARK_CONN_ID")
    if not conn_id:
        return pipeline.extract(settings, run_date)
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    import genrec_core.extract.main as entry_point

    hook = SparkSubmitHook(
        conn_id=conn_id,
        name=f"genrec-extract-{run_date}",
        application_args=["--run-date", run_date.isoformat()],
        env_vars=settings_env(settings),
        conf={"spark.driver.host": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")},
    )
    hook.submit(application=entry_point.__file__)
    return pipeline.extract_result(settings, run_date)
