"""What a genrec task needs from its Airflow context: validated settings and the run date D."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from genrec_core.config import Settings

if TYPE_CHECKING:
    from genrec_core.handoffs import RunRecord


def settings(context: Mapping[str, Any]) -> Settings:
    """Settings from file/env, then Airflow connections, then the run's params (validated once)."""
    from genrec_airflow.connections import connection_overrides
    from genrec_core import orchestration

    return orchestration.settings_for_run(context.get("params"), **connection_overrides())


def run_date(context: Mapping[str, Any]) -> dt.date:
    from genrec_core import orchestration

    return orchestration.run_date_of(context)


def run_record(
    context: Mapping[str, Any],
    extracted: dict[str, Any],
    trained: dict[str, Any],
    evaluation: dict[str, Any],
    **later: dict[str, Any],
) -> RunRecord:
    """The run record from the upstream tasks' XComs (`later`: decision, scored, objects, postgres)."""
    from genrec_core.handoffs import (
        Evaluated,
        Extracted,
        GateDecision,
        Handoff,
        PublishedObjects,
        PublishedPostgres,
        RunRecord,
        Scored,
        Trained,
    )

    kinds: dict[str, type[Handoff]] = {
        "decision": GateDecision,
        "scored": Scored,
        "objects": PublishedObjects,
        "postgres": PublishedPostgres,
    }
    dag_run = context.get("dag_run")
    started = dag_run.start_date.isoformat() if dag_run is not None and dag_run.start_date else None
    record = RunRecord.start(
        run_date(context),
        Extracted.from_xcom(extracted),
        Trained.from_xcom(trained),
        Evaluated.from_xcom(evaluation),
        started,
        context.get("run_id"),
    )
    return record.but(**{name: kinds[name].from_xcom(value) for name, value in later.items() if value is not None})
