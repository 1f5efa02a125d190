"""The Airflow glue in plugins/genrec_airflow: connections through the provider hooks, and alerts."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from genrec_core.errors import GateRejected
from genrec_core.publish.lake import Lake
from genrec_core.storage import Storage
from tests.support import lists


def test_connections_become_plain_settings(monkeypatch):
    from genrec_airflow.connections import connection_overrides
    from genrec_airflow.runtime import settings

    monkeypatch.setenv("AIRFLOW_CONN_GENREC_POSTGRES", "postgresql://writer:s3cret@db.internal:5433/recs")
    monkeypatch.setenv(
        "AIRFLOW_CONN_GENREC_S3",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "AKIA-TEST",
                "password": "secret-key",
                "extra": {"endpoint_url": "http://minio:9000", "region_name": "eu-west-1"},
            }
        ),
    )
    overrides = connection_overrides()
    assert overrides["pg_dsn"].startswith("postgresql://writer:s3cret@db.internal:5433/recs")
    assert overrides["s3"] == {
        "endpoint_url": "http://minio:9000",
        "region": "eu-west-1",
        "access_key_id": "AKIA-TEST",
        "secret_access_key": "secret-key",
    }
    resolved = settings({"params": {"k": 7, "force_publish": True}})
    assert resolved.k == 7 and resolved.force_publish and resolved.s3.endpoint_url == "http://minio:9000"
    assert "s3cret" not in json.dumps(resolved.public_dict())  # secrets stay masked


def test_without_connections_settings_come_from_the_environment(monkeypatch):
    from genrec_airflow.connections import connection_overrides

    monkeypatch.delenv("AIRFLOW_CONN_GENREC_POSTGRES", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_GENREC_S3", raising=False)
    assert connection_overrides() == {}


def test_bad_param_fails_at_once_with_its_name():
    from genrec_airflow.runtime import settings
    from genrec_core.errors import ConfigError

    with pytest.raises(ConfigError, match="setting 'k'"):
        settings({"params": {"k": 0}})
    with pytest.raises(ConfigError, match="setting 'train.mode'"):
        settings({"params": {"mode": "sometimes"}})


def test_mode_param_sets_the_training_mode():
    from genrec_airflow.runtime import settings

    assert settings({"params": {"mode": "retrain"}}).train.mode == "retrain"
    assert settings({"params": {}}).train.mode == "auto"


class _Recording:
    """A notifier that records what it was sent instead of sending it."""

    def __init__(self):
        from genrec_airflow.notifiers import GenrecNotifier

        sent = self.sent = []

        class Recording(GenrecNotifier):
            def send(self, payload):
                sent.append(payload)

        self.cls = Recording


class _Ti:
    task_id = "gate"


def test_failure_and_gate_rejection_alerts():
    recording = _Recording()
    context = {
        "ti": _Ti(),
        "run_id": "scheduled__2026-11-21",
        "data_interval_start": dt.datetime(2026, 11, 20),
        "exception": GateRejected("quality gate rejected the run for 2026-11-20: does not beat popularity"),
    }
    recording.cls("failure").notify(context)
    recording.cls("failure").notify({**context, "exception": RuntimeError("disk full")})
    recording.cls("late").notify({"run_id": "scheduled__2026-11-21", "data_interval_start": dt.datetime(2026, 11, 20)})
    first, second, third = recording.sent
    assert first["event"] == "gate_rejected" and "does not beat popularity" in first["text"]
    assert first["run_date"] == "2026-11-20" and first["task_id"] == "gate"
    assert second["event"] == "failure" and "disk full" in second["reason"]
    assert third["event"] == "late" and third["reason"] == ""


def test_alert_is_posted_to_the_webhook_connection(monkeypatch):
    from genrec_airflow.notifiers import GenrecNotifier

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/services/hook"
        monkeypatch.setenv("AIRFLOW_CONN_GENREC_ALERTS", json.dumps({"conn_type": "http", "host": url}))
        GenrecNotifier("failure").notify({"run_id": "r1", "exception": RuntimeError("boom")})
    finally:
        server.shutdown()
    assert received == [("/services/hook", received[0][1])] and received[0][1]["reason"] == "boom"


@pytest.mark.integration
def test_watchdog_alerts_when_d_is_not_published(airflow_db, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from genrec_airflow.notifiers import GenrecNotifier
    from genrec_core.dev.paths import PROJECT_ROOT

    sent = []
    monkeypatch.setattr(GenrecNotifier, "send", lambda self, payload: sent.append(payload))
    monkeypatch.setenv("GENREC_OUTPUT_URI", (tmp_path / "out").as_uri())
    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).get_dag("genrec_watchdog")
    # the 06:00 check on 2026-11-21 looks at D = 2026-11-20
    dag.test(logical_date=dt.datetime(2026, 11, 21, 6, tzinfo=dt.UTC))
    assert [p["event"] for p in sent] == ["late"] and "2026-11-20 is not published" in sent[0]["reason"]

    day = dt.date(2026, 11, 20)
    Lake(Storage(), (tmp_path / "out").as_uri()).publish(day, lambda: iter([lists(day, 1, 1)]), {})
    sent.clear()
    dag.test(logical_date=dt.datetime(2026, 11, 21, 6, 30, tzinfo=dt.UTC))
    assert sent == []


def test_dag_files_parse_without_heavy_imports():
    """Parsing the DAG folder must not import torch, pyspark, pandas, scipy or any model's implementation (that
    happens inside tasks); the model registry's specs and the settings are light and may load."""
    import subprocess
    import sys

    from genrec_core.dev.airflow_env import airflow_env
    from genrec_core.dev.paths import PROJECT_ROOT

    code = (
        "import runpy, sys, glob\n"
        "for f in sorted(glob.glob('dags/*.py')): runpy.run_path(f)\n"
        "heavy = sorted(m for m in sys.modules if m in ('torch', 'pyspark', 'pandas', 'scipy')\n"
        "               or m.startswith('genrec_core.models.') and m.endswith(('.model', '.base', '.neural')))\n"
        "assert 'genrec_core.models.registry' in sys.modules  # the check would be empty otherwise\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    env = airflow_env(PROJECT_ROOT / ".state" / "parse-check")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY=\n" in out.stdout, out.stdout


def test_param_defaults_are_the_configured_settings(monkeypatch):
    """A scheduled run takes the params' defaults: they must be the operator's settings, not fixed values."""
    from airflow.dag_processing.dagbag import DagBag

    from genrec_core.dev.paths import PROJECT_ROOT

    monkeypatch.setenv("GENREC_LOOKBACK_DAYS", "45")
    monkeypatch.setenv("GENREC_TRAIN__MODE", "retrain")
    monkeypatch.setenv("GENREC_MODEL", "ease")
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "genrec_nightly.py"))
    params = bag.get_dag("genrec_nightly").params
    assert (params["lookback_days"], params["mode"], params["model"], params["k"]) == (45, "retrain", "ease", 10)
