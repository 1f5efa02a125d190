"""A real PostgreSQL server started by the project: initdb into a folder, listen on loopback, stop on exit.

Used by `make demo` and the tests when no `GENREC_PG_DSN` is given. initdb refuses
to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from genrec_core.errors import ServiceError

log = logging.getLogger(__name__)

_SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/usr/pgsql-*/bin", "/opt/homebrew/bin", "/usr/bin")
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them "
    "(Debian/Ubuntu: `apt-get install postgresql`) or point genrec at an existing server "
    "with GENREC_PG_DSN=postgresql://user:password@host:5432/db"
)


def find_bin_dir() -> Path | None:
    """The newest directory holding both initdb and pg_ctl, or None."""
    env = os.environ.get("GENREC_PG_BIN")
    candidates = [env] if env else []
    for pattern in _SEARCH:
        candidates.extend(sorted(glob.glob(pattern), reverse=True))
    for directory in candidates:
        if directory and (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """Context manager: a throwaway cluster on 127.0.0.1:<free port> with database `genrec`."""

    def __init__(self, base_dir: str | Path | None = None, port: int | None = None) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise ServiceError(INSTALL_HINT)
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self._own_dir = base_dir is None
        self.base = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="genrec-pg-"))
        self.data_dir = self.base / "data"
        self._run_as = "postgres" if os.geteuid() == 0 else None
        self.user = "genrec"
        self.database = "genrec"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self._run_as, "--"] if self._run_as else []) + list(args)

    def _run(self, *args: str) -> None:
        result = subprocess.run(self._cmd(*args), capture_output=True, text=True)
        if result.returncode != 0:
            raise ServiceError(
                f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )

    def start(self) -> LocalPostgres:
        self.base.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.base / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        self.create_database(self.database)
        log.info("local Postgres on 127.0.0.1:%d (data %s)", self.port, self.data_dir)
        return self

    def create_database(self, name: str) -> None:
        """Create database `name` owned by the server's user unless it exists."""
        import psycopg2
        from psycopg2 import sql

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.close()

    def stop(self, remove: bool | None = None) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"),
                capture_output=True,
            )
        if remove if remove is not None else self._own_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start the same cluster (tests use this to simulate a database restart)."""
        self.stop(remove=False)
        self.start()

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
