"""What the DAG needs from a task's context, without importing Airflow.

The DAG passes its params and the run's data interval; this turns them into the
validated settings and the run date D (the day the data interval covers).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from genrec_core.config import Settings, load_settings
from genrec_core.pipeline import parse_run_date

# DAG param -> the setting it sets ("section.field" for a setting in a section).
PARAM_SETTINGS = {
    "model": "model",
    "k": "k",
    "lookback_days": "lookback_days",
    "force_publish": "force_publish",
    "mode": "train.mode",
}


def _nested(dotted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in dotted.items():
        section, _, field = name.rpartition(".")
        (out.setdefault(section, {}) if section else out)[field] = value
    return out


def settings_for_run(params: Mapping[str, Any] | None, **connections: Any) -> Settings:
    """Settings from file/env, then `connections` (plain values the caller resolved, e.g. `pg_dsn`, `s3`),
    then the run's params; validated here, once, so a bad param fails the task at once by name."""
    overrides = {key: value for key, value in connections.items() if value is not None}
    chosen = {
        setting: params[param] for param, setting in PARAM_SETTINGS.items() if params and params.get(param) is not None
    }
    overrides.update(_nested(chosen))
    return load_settings(**overrides)


def run_date_of(context: Mapping[str, Any]) -> dt.date:
    """D = the start of the run's data interval (never `now()`)."""
    start = context.get("data_interval_start") or context.get("logical_date")
    if start is None:
        raise ValueError("the DAG run has no data interval; genrec_nightly needs a data-interval timetable")
    return parse_run_date(start)
