"""What a genrec task needs from its Airflow context: validated settings and the run date D."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from genrec_core.config import Settings


def settings(context: Mapping[str, Any]) -> Settings:
    """Settings from file/env, then Airflow connections, then the run's params (validated once)."""
    from genrec_core import orchestration

    from genrec_airflow.connections import connection_overrides

    return orchestration.settings_for_run(context.get("params"), **connection_overrides())


def run_date(context: Mapping[str, Any]) -> dt.date:
    from genrec_core import orchestration

    return orchestration.run_date_of(context)
