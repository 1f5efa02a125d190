"""Ordered, idempotent SQL migrations from `sql/V###__name.sql`."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import psycopg2

from genrec_core.publish.connection import connect

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_NAME = re.compile(r"^V(\d{3})__[a-z0-9_]+\.sql$")
_LOCK_KEY = 7_242_011  # advisory lock id: one migrator at a time


def migration_files(sql_dir: Path = SQL_DIR) -> list[tuple[str, Path]]:
    files = sorted(p for p in sql_dir.glob("V*.sql") if _NAME.match(p.name))
    if not files:
        raise FileNotFoundError(f"no migrations found in {sql_dir}")
    return [(_NAME.match(p.name).group(1), p) for p in files]  # type: ignore[union-attr]


def upgrade(dsn: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply every migration not applied yet, each in its own transaction; return the versions applied."""
    applied_now = []
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            cur.execute("CREATE SCHEMA IF NOT EXISTS genrec")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS genrec.schema_migrations ("
                "version text PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for version, path in migration_files(sql_dir):
            with conn, conn.cursor() as cur:
                cur.execute("SELECT 1 FROM genrec.schema_migrations WHERE version = %s", (version,))
                if cur.fetchone():
                    continue
                cur.execute(path.read_text())
                cur.execute(
                    "INSERT INTO genrec.schema_migrations (version, name) VALUES (%s, %s)", (version, path.name)
                )
                applied_now.append(version)
                log.info("applied migration %s", path.name)
    except psycopg2.Error as exc:
        raise RuntimeError(f"migration failed: {exc}") from exc
    finally:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
        finally:
            conn.close()
    return applied_now
