"""A real `airflow standalone` (api-server, scheduler, dag-processor, triggerer) for this repo's DAGs.

For tests, the backfill walkthrough and UI screenshots: the metadata database is a
database `airflow` on the given local Postgres (so the LocalExecutor runs tasks in
parallel, as in production), the UI needs no login (the simple auth manager with
every user an admin), and it listens on 127.0.0.1:<free port>. Stopped with SIGINT to
its process group, which is how `airflow standalone` shuts down its components.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from genrec_core.dev.airflow_env import airflow_bin, airflow_env
from genrec_core.dev.services.local_postgres import LocalPostgres, free_port
from genrec_core.errors import ServiceError


class AirflowStandalone:
    """Context manager: Airflow 3 on loopback with `extra_env` (connections, GENREC_* settings) in every task."""

    def __init__(
        self, home: Path, postgres: LocalPostgres, extra_env: dict[str, str] | None = None, parallelism: int = 4
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        postgres.create_database("airflow")
        self.env = airflow_env(
            home,
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{postgres.user}@127.0.0.1:{postgres.port}/airflow",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                **(extra_env or {}),
            },
        )
        # `airflow standalone` starts its components as `airflow <component>` from PATH
        self.env["PATH"] = os.pathsep.join([str(Path(airflow_bin()).parent), self.env.get("PATH", "")])
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> AirflowStandalone:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout_s: float = 240.0) -> AirflowStandalone:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "standalone.log", "wb")  # noqa: SIM115 (kept open for the process's life)
        self._proc = subprocess.Popen(
            [airflow_bin(), "standalone"], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServiceError(
                    f"airflow standalone exited ({self._proc.returncode}); see {self.home}/standalone.log"
                )
            try:
                health = self.get("/api/v2/monitor/health")
                if health.get("scheduler", {}).get("status") == "healthy":
                    return self
            except OSError:
                pass
            time.sleep(2)
        self.stop()
        raise ServiceError(f"airflow standalone not healthy after {timeout_s:.0f}s; see {self.home}/standalone.log")

    def stop(self, timeout_s: float = 60.0) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGINT)
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def get(self, path: str) -> Any:
        """GET a JSON endpoint of the api-server (no login: every user is an admin here)."""
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.load(response)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `airflow <args>` against this instance's metadata database."""
        result = subprocess.run([airflow_bin(), *args], env=self.env, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise ServiceError(f"airflow {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def wait_for_dag(self, dag_id: str, timeout_s: float = 180.0) -> None:
        """Until the dag-processor has parsed `dag_id` into the database."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.get(f"/api/v2/dags/{dag_id}")
                return
            except OSError:
                time.sleep(2)
        raise ServiceError(f"DAG {dag_id} was not parsed within {timeout_s:.0f}s")
