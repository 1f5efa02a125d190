"""Alerts through Airflow's notifier interface: failures, gate rejections, runs late past a deadline.

Sent as JSON to the webhook of the `genrec_alerts` HTTP connection when it is defined (Slack
and most chat tools accept `{"text": ...}`), and always logged. Email goes through Airflow's
own SMTP notifier if you add one beside this.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

ALERTS_CONN_ID = "genrec_alerts"


class GenrecNotifier(BaseNotifier):
    """Notify about one event kind (`failure`, `late`); a gate rejection is a failure whose reason says so."""

    template_fields = ("title",)

    def __init__(self, event: str, title: str = "genrec {{ dag.dag_id if dag else '' }}") -> None:
        super().__init__()
        self.event = event
        self.title = title

    @staticmethod
    def payload(event: str, title: str, context: Any) -> dict[str, Any]:
        get = context.get
        ti = get("ti") or get("task_instance")
        exception = get("exception")
        reason = str(exception) if exception else (get("reason") or "")
        kind = "gate_rejected" if type(exception).__name__ == "GateRejected" else event
        interval = get("data_interval_start")
        return {
            "text": f"{title}: {kind}" + (f" - {reason}" if reason else ""),
            "event": kind,
            "dag_id": getattr(get("dag"), "dag_id", None),
            "run_id": get("run_id"),
            "task_id": getattr(ti, "task_id", None),
            "run_date": interval.date().isoformat() if hasattr(interval, "date") else None,
            "reason": reason,
        }

    def notify(self, context: Any) -> None:
        self.send(self.payload(self.event, self.title, context))

    def send(self, payload: dict[str, Any]) -> None:
        log.warning("genrec alert: %s", payload["text"])
        url = self.webhook_url()
        if not url:
            return
        request = urllib.request.Request(
            url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    @staticmethod
    def webhook_url() -> str | None:
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(ALERTS_CONN_ID)
        except Exception:
            return None
        host = conn.host or ""
        if host.startswith(("http://", "https://")):
            return host
        scheme = (conn.schema or "https") if conn.conn_type == "http" else "https"
        port = f":{conn.port}" if conn.port else ""
        return f"{scheme}://{host}{port}" if host else None
