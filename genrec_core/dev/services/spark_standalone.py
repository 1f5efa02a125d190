"""A real Spark standalone cluster on loopback (one master, one worker) from the pyspark install.

For tests and local trials of the spark-submit path; production points `spark_default`
at a real cluster. Stopped (both JVMs) when the context exits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from genrec_core.dev.services.local_postgres import free_port
from genrec_core.errors import ServiceError


def spark_home() -> Path:
    """SPARK_HOME of the installed pyspark (it ships bin/spark-class and bin/spark-submit)."""
    import pyspark

    return Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent)


class SparkStandalone:
    """Context manager: `spark://127.0.0.1:<port>` with one worker of `cores` cores and `memory`."""

    def __init__(self, cores: int = 1, memory: str = "1g") -> None:
        self.home = spark_home()
        self.port, self.ui_port = free_port(), free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        self.cores, self.memory = cores, memory
        self.base = Path(tempfile.mkdtemp(prefix="genrec-spark-"))
        self._procs: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SPARK_HOME": str(self.home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(self.base / "local"),
            "SPARK_WORKER_DIR": str(self.base / "work"),
            "SPARK_LOG_DIR": str(self.base / "logs"),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.base / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the process's life)
        self._procs.append(
            subprocess.Popen(
                [str(self.home / "bin" / "spark-class"), *args],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def alive_workers(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as response:
            state = json.load(response)
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def __enter__(self) -> SparkStandalone:
        self._start(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--webui-port",
                str(self.ui_port),
            ],
        )
        self._start(
            "worker",
            [
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                str(self.cores),
                "--memory",
                self.memory,
                "--webui-port",
                str(free_port()),
                self.master_url,
            ],
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if self.alive_workers() >= 1:
                    return self
            except OSError:
                pass
            if any(p.poll() is not None for p in self._procs):
                break
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise ServiceError(f"Spark standalone cluster did not come up; logs in {self.base}")

    def submit(
        self, app: str | Path, args: list[str], env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        """spark-submit `app` to this cluster (client mode: the driver runs here, executors on the worker)."""
        command = [
            str(self.home / "bin" / "spark-submit"),
            "--master",
            self.master_url,
            "--conf",
            "spark.driver.host=127.0.0.1",
            "--conf",
            "spark.ui.enabled=false",
            "--executor-memory",
            "768m",
            str(app),
            *args,
        ]
        return subprocess.run(
            command, env={**self.env(), **(env or {})}, capture_output=True, text=True, timeout=timeout
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(self.base, ignore_errors=True)
