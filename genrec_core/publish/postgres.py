"""Publish a run date's lists to Postgres: COPY into a fresh table, index it, swap it in atomically.

Readers of `genrec.recommendations` and its views see either the previous batch for
a date or the new one, never a partial one: the loaded, indexed table becomes the
date's partition in one short transaction that also records the run and moves the
serving pointer. Identifiers are composed with `psycopg2.sql`; values are always bound.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import logging
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from genrec_core.contract import RECOMMENDATION_COLUMNS
from genrec_core.errors import DataError
from genrec_core.publish.binary_copy import FieldKind, encode_rows
from genrec_core.publish.connection import connect

log = logging.getLogger(__name__)

SCHEMA = "genrec"
PARENT = "recommendations"
_PARTITION = re.compile(r"^recommendations_(\d{8})$")
# Per index build: enough to sort a 10M-row date in memory (two builds run at once).
INDEX_BUILD_MEMORY = "1GB"
_STAGE_INFIX = "_load_"
_LOCK_NAMESPACE = 0x67656E  # advisory-lock key space of publishes ("gen"); the second key is the date


@dataclass(frozen=True)
class PublishResult:
    rows: int
    timings: dict[str, float]
    dropped_dates: list[dt.date] = field(default_factory=list)


def partition_table(run_date: dt.date) -> str:
    return f"{PARENT}_{run_date:%Y%m%d}"


# Columns constant within one publish: the stage table supplies them as defaults, so COPY
# need not send or parse them for every row (a part whose model differs sends its own).
_VARYING = ("user_id", "rank", "item_id", "score", "source")


# How each column of genrec.recommendations is sent in binary COPY (the parent table's types).
FIELD_KINDS: dict[str, FieldKind] = {
    "run_date": "date",
    "user_id": "text",
    "rank": "int4",
    "item_id": "text",
    "score": "float8",
    "model": "text",
    "source": "text",
}


def _copy_statement(target: sql.Composable, columns: tuple[str, ...]) -> sql.Composed:
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(target, names)


def _check_table(table: pa.Table, run_date: dt.date) -> None:
    missing = [c for c in RECOMMENDATION_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"lists are missing column(s) {missing}")
    bad = table.filter(pc.not_equal(table["run_date"], pa.scalar(run_date, pa.date32())))
    if bad.num_rows:
        raise DataError(f"{bad.num_rows} rows carry a run_date other than {run_date}")


def _columns_to_send(table: pa.Table, default_model: str) -> tuple[str, ...]:
    models = pc.unique(table["model"])
    if len(models) == 1 and models[0].as_py() == default_model:
        return _VARYING
    return (*_VARYING, "model")


def _copy_parallel(dsn: str, stage: sql.Identifier, tables: Iterable[pa.Table], run_date: dt.date, workers: int) -> int:
    """COPY each table over one of `workers` connections; at most 2 x workers tables in memory at once."""
    iterator = iter(tables)
    first = next(iterator, None)
    if first is None:
        return 0
    _check_table(first, run_date)
    default_model = first["model"][0].as_py() if first.num_rows else ""
    setup = connect(dsn)
    with setup, setup.cursor() as cur:
        cur.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN run_date SET DEFAULT {}, ALTER COLUMN model SET DEFAULT {}").format(
                stage, sql.Literal(run_date), sql.Literal(default_model)
            )
        )
    connections: queue.Queue = queue.Queue()
    opened = [connect(dsn) for _ in range(workers)]
    for conn in opened:
        connections.put(conn)
    in_flight = threading.BoundedSemaphore(2 * workers)

    def load(table: pa.Table) -> int:
        conn = connections.get()
        try:
            columns = _columns_to_send(table, default_model)
            with conn, conn.cursor() as cur:
                stream = encode_rows(table, {c: FIELD_KINDS[c] for c in columns})
                cur.copy_expert(_copy_statement(stage, columns).as_string(cur), io.BytesIO(stream), size=1 << 20)
                if cur.rowcount != table.num_rows:
                    raise DataError(f"COPY stored {cur.rowcount} rows of a {table.num_rows}-row part")
            return table.num_rows
        finally:
            connections.put(conn)
            in_flight.release()

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genrec-copy") as pool:
            futures = []
            for table in itertools.chain([first], iterator):
                _check_table(table, run_date)
                in_flight.acquire()
                futures.append(pool.submit(load, table))
            rows = sum(f.result() for f in futures)
        with setup, setup.cursor() as cur:
            cur.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN run_date DROP DEFAULT, ALTER COLUMN model DROP DEFAULT").format(
                    stage
                )
            )
        return rows
    finally:
        for conn in [*opened, setup]:
            conn.close()


def _build_indexes(dsn: str, stage: sql.Identifier) -> dict[str, float]:
    """The two indexes the parent declares, built at once on two connections; seconds of each."""
    statements = {
        "index_user_s": sql.SQL("CREATE INDEX ON {} (user_id, rank)").format(stage),
        "index_item_s": sql.SQL("CREATE INDEX ON {} (item_id)").format(stage),
    }

    def build(statement: sql.Composed) -> float:
        conn = connect(dsn)
        try:
            started = time.perf_counter()
            with conn, conn.cursor() as cur:
                cur.execute("SET maintenance_work_mem = %s", (INDEX_BUILD_MEMORY,))
                # The two builds are the parallelism; their own parallel workers would oversubscribe the cores.
                cur.execute("SET max_parallel_maintenance_workers = 0")
                cur.execute(statement)
            return time.perf_counter() - started
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=len(statements)) as pool:
        futures = {name: pool.submit(build, s) for name, s in statements.items()}
        return {name: future.result() for name, future in futures.items()}


def kept_dates(cur: Any) -> list[dt.date]:
    """Dates with an attached partition, newest first."""
    cur.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'genrec.recommendations'::regclass"
    )
    dates = []
    for (name,) in cur.fetchall():
        match = _PARTITION.match(name)
        if match:
            dates.append(dt.datetime.strptime(match.group(1), "%Y%m%d").date())
    return sorted(dates, reverse=True)


def serving_date(cur: Any) -> dt.date | None:
    cur.execute("SELECT run_date FROM genrec.serving")
    row = cur.fetchone()
    return row[0] if row else None


def _record(
    cur: Any,
    run_date: dt.date,
    status: str,
    record: dict[str, Any],
    rows: int | None = None,
    timings: dict[str, float] | None = None,
    detail: str | None = None,
) -> None:
    cur.execute(
        "INSERT INTO genrec.runs (run_date, status, model, model_version, metrics, rows_published, artifacts, "
        "timings, started_at, detail, selection, stages) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            run_date,
            status,
            record.get("model"),
            record.get("model_version"),
            json.dumps(record.get("metrics", {})),
            rows,
            json.dumps(record.get("artifacts", {})),
            json.dumps(timings or {}),
            record.get("started_at"),
            detail,
            json.dumps(record["selection"]) if record.get("selection") is not None else None,
            json.dumps(record.get("stages") or {}),
        ),
    )


def _drop_partition(cur: Any, run_date: dt.date) -> None:
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(SCHEMA, partition_table(run_date))))


def publish_postgres(
    dsn: str,
    run_date: dt.date,
    tables: Iterable[pa.Table],
    run_record: dict[str, Any],
    keep_dates: int = 30,
    workers: int = 2,
) -> PublishResult:
    """Load `tables` as the partition for `run_date`, replacing any previous one.

    `run_record` (model, model_version, metrics, artifacts, started_at) goes to `genrec.runs`
    in the swap transaction. Afterwards only the newest `keep_dates` dates (and the served one) are kept.
    """
    stage_name = f"{partition_table(run_date)}{_STAGE_INFIX}{secrets.token_hex(4)}"
    stage = sql.Identifier(SCHEMA, stage_name)
    final = sql.Identifier(SCHEMA, partition_table(run_date))
    parent = sql.Identifier(SCHEMA, PARENT)
    timings: dict[str, float] = {}
    conn = connect(dsn)
    try:
        _claim_date(conn, run_date)
        with conn, conn.cursor() as cur:
            # UNLOGGED while loading would be faster but could not be attached to a logged parent.
            cur.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(stage, parent)
            )
            # A matching CHECK lets ATTACH skip its validation scan.
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (run_date = {})").format(
                    stage, sql.Identifier(f"{stage_name}_date"), sql.Literal(run_date)
                )
            )
        started = time.perf_counter()
        rows = _copy_parallel(dsn, stage, tables, run_date, workers)
        timings["copy_s"] = time.perf_counter() - started
        if rows == 0:
            raise DataError(f"refusing to publish an empty batch for {run_date}")
        started = time.perf_counter()
        timings.update(_build_indexes(dsn, stage))
        timings["index_s"] = time.perf_counter() - started
        started = time.perf_counter()
        with conn, conn.cursor() as cur:  # planner statistics before readers arrive
            cur.execute(sql.SQL("ANALYZE {}").format(stage))
        timings["analyze_s"] = time.perf_counter() - started
        started = time.perf_counter()
        with conn, conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '60s'")
            _drop_partition(cur, run_date)
            cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(stage, sql.Identifier(partition_table(run_date))))
            cur.execute(
                sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
                    parent, final, sql.Literal(run_date)
                )
            )
            cur.execute(
                "INSERT INTO genrec.serving (singleton, run_date) VALUES (true, %s) ON CONFLICT (singleton) DO UPDATE "
                "SET run_date = GREATEST(genrec.serving.run_date, EXCLUDED.run_date), updated_at = now()",
                (run_date,),
            )
            timings["swap_s"] = time.perf_counter() - started
            _record(cur, run_date, "published", run_record, rows, timings)
        dropped = apply_retention(dsn, keep_dates)
        log.info(
            "published %d rows for %s to Postgres (%s)",
            rows,
            run_date,
            ", ".join(f"{k} {v:.2f}" for k, v in timings.items()),
        )
        return PublishResult(rows, timings, dropped)
    except BaseException:
        _discard_stage(conn, stage)
        raise
    finally:
        conn.close()


def _claim_date(conn: Any, run_date: dt.date) -> None:
    """Serialise publishes of one date (a session lock, released even if this process is killed) and drop
    staging tables that killed or crashed attempts for the date left behind: holding the lock, none is live."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_NAMESPACE, run_date.toordinal()))
        prefix = partition_table(run_date) + _STAGE_INFIX
        cur.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND left(c.relname, %s) = %s",
            (SCHEMA, len(prefix), prefix),
        )
        for (name,) in cur.fetchall():
            log.warning("dropping %s.%s, left by an earlier publish of %s that did not finish", SCHEMA, name, run_date)
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(SCHEMA, name)))


def _discard_stage(conn: Any, stage: sql.Identifier) -> None:
    """Best effort after a failure: the original error matters more (the next attempt sweeps what is left)."""
    try:
        conn.rollback()
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
    except psycopg2.Error as cleanup:
        log.warning(
            "could not drop the staging table after a failed publish (%s); the next publish of the date will",
            str(cleanup).strip(),
        )


def apply_retention(dsn: str, keep_dates: int) -> list[dt.date]:
    """Drop partitions beyond the newest `keep_dates` dates, never the served one; return what was dropped."""
    if keep_dates < 1:
        raise ValueError("keep_dates must be >= 1")
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            served = serving_date(cur)
            dropped = [d for d in kept_dates(cur)[keep_dates:] if d != served]
            for day in dropped:
                _drop_partition(cur, day)
        if dropped:
            log.info("retention: dropped partitions %s", [d.isoformat() for d in dropped])
        return dropped
    finally:
        conn.close()


def run_history(dsn: str, limit: int = 200) -> list[dict[str, Any]]:
    """The newest `limit` rows of genrec.runs, oldest first (status, model, metrics, rows, detail)."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT run_date, status, model, model_version, metrics, rows_published, detail, recorded_at, "
                "selection, stages FROM genrec.runs ORDER BY recorded_at DESC, run_id DESC LIMIT %s",
                (limit,),
            )
            assert cur.description is not None
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        conn.close()
    return rows[::-1]


def record_rejected(dsn: str, run_date: dt.date, run_record: dict[str, Any], reasons: list[str]) -> None:
    """Record a run the quality gate stopped; nothing is published and the served date does not move."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            _record(cur, run_date, "rejected", run_record, detail="quality gate: " + "; ".join(reasons))
    finally:
        conn.close()


def rollback_to(dsn: str, run_date: dt.date, reason: str = "") -> dt.date | None:
    """Serve `run_date` (a kept date) from now on; return the date served before."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("LOCK TABLE genrec.serving IN EXCLUSIVE MODE")
            if run_date not in kept_dates(cur):
                raise DataError(
                    f"cannot roll back to {run_date}: no published partition for that date "
                    f"(kept: {[d.isoformat() for d in kept_dates(cur)]})"
                )
            previous = serving_date(cur)
            cur.execute(
                "INSERT INTO genrec.serving (singleton, run_date) VALUES (true, %s) ON CONFLICT (singleton) "
                "DO UPDATE SET run_date = EXCLUDED.run_date, updated_at = now()",
                (run_date,),
            )
            _record(
                cur, run_date, "rolled_back", {}, detail=f"latest re-pointed from {previous} to {run_date}. {reason}"
            )
        return previous
    finally:
        conn.close()


def drop_date(dsn: str, run_date: dt.date, reason: str = "") -> dt.date | None:
    """Remove a date's partition; if it was served, serve the newest remaining date. Return the served date."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("LOCK TABLE genrec.serving IN EXCLUSIVE MODE")
            kept = kept_dates(cur)
            if run_date not in kept:
                raise DataError(f"no published partition for {run_date} to drop")
            _drop_partition(cur, run_date)
            served = serving_date(cur)
            if served == run_date:
                remaining = [d for d in kept if d != run_date]
                if remaining:
                    cur.execute("UPDATE genrec.serving SET run_date = %s, updated_at = now()", (remaining[0],))
                    served = remaining[0]
                else:
                    cur.execute("DELETE FROM genrec.serving")
                    served = None
            _record(cur, run_date, "dropped", {}, detail=f"partition dropped; serving {served}. {reason}")
        return served
    finally:
        conn.close()


def read_user_recommendations(dsn: str, user_id: str, run_date: dt.date | None = None) -> list[dict[str, Any]]:
    """A user's list: from the served date, or from `run_date`."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            if run_date is None:
                cur.execute(
                    "SELECT run_date, rank, item_id, score, model FROM genrec.recommendations_latest "
                    "WHERE user_id = %s ORDER BY rank",
                    (user_id,),
                )
            else:
                cur.execute(
                    "SELECT run_date, rank, item_id, score, model FROM genrec.recommendations_by_date "
                    "WHERE run_date = %s AND user_id = %s ORDER BY rank",
                    (run_date, user_id),
                )
            assert cur.description is not None
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        conn.close()
