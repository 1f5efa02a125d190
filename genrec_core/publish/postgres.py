"""Publish a run date's lists to Postgres: COPY into a fresh table, index it, swap it in atomically.

Readers of `genrec.recommendations` (and its views) see either the previous batch
for that date or the new one, never a partial one: the new table becomes the
date's partition in one short transaction that also records the run.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import secrets
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2 import sql

from genrec_core.contract import RECOMMENDATION_COLUMNS
from genrec_core.errors import DataError
from genrec_core.publish.connection import connect

log = logging.getLogger(__name__)

SCHEMA = "genrec"
PARENT = "recommendations"


def partition_table(run_date: dt.date) -> str:
    return f"{PARENT}_{run_date:%Y%m%d}"


def _copy_table(cur: Any, target: sql.Composed, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pacsv.write_csv(table.select(list(RECOMMENDATION_COLUMNS)), buffer,
                    pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    buffer.seek(0)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in RECOMMENDATION_COLUMNS)
    cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(target, columns).as_string(cur),
                    buffer)


def publish_postgres(dsn: str, run_date: dt.date, tables: Iterable[pa.Table], run_record: dict[str, Any]) -> int:
    """Load `tables` as the partition for `run_date`, replacing any previous one; return rows loaded.

    `run_record` (model, metrics, artifacts) is written to `genrec.runs` in the swap transaction.
    """
    stage_name = f"{partition_table(run_date)}_load_{secrets.token_hex(4)}"
    stage = sql.Identifier(SCHEMA, stage_name)
    final = sql.Identifier(SCHEMA, partition_table(run_date))
    parent = sql.Identifier(SCHEMA, PARENT)
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(stage, parent))
            # A matching CHECK lets ATTACH skip its validation scan.
            cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (run_date = {})").format(
                stage, sql.Identifier(f"{stage_name}_date"), sql.Literal(run_date)))
        rows = 0
        with conn, conn.cursor() as cur:
            for table in tables:
                bad = table.filter(pa.compute.not_equal(table["run_date"], pa.scalar(run_date, pa.date32())))
                if bad.num_rows:
                    raise DataError(f"{bad.num_rows} rows carry a run_date other than {run_date}")
                _copy_table(cur, stage, table)
                rows += table.num_rows
            if rows == 0:
                raise DataError(f"refusing to publish an empty batch for {run_date}")
            cur.execute(sql.SQL("CREATE INDEX ON {} (user_id, rank)").format(stage))
            cur.execute(sql.SQL("CREATE INDEX ON {} (item_id)").format(stage))
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(stage))
            loaded = cur.fetchone()[0]
            if loaded != rows:
                raise DataError(f"COPY loaded {loaded} rows, expected {rows}")
        with conn, conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '60s'")
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(final))
            cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(stage, sql.Identifier(partition_table(run_date))))
            cur.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
                parent, final, sql.Literal(run_date)))
            cur.execute(
                "INSERT INTO genrec.runs (run_date, status, model, metrics, rows_published, artifacts) "
                "VALUES (%s, 'published', %s, %s, %s, %s)",
                (run_date, run_record.get("model"), json.dumps(run_record.get("metrics", {})), rows,
                 json.dumps(run_record.get("artifacts", {}))),
            )
        log.info("published %d rows for %s to Postgres", rows, run_date)
        return rows
    except BaseException:
        conn.rollback()
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
        raise
    finally:
        conn.close()


def read_user_recommendations(dsn: str, user_id: str, run_date: dt.date | None = None) -> list[dict[str, Any]]:
    """A user's list: from the latest published date, or from `run_date`."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            if run_date is None:
                cur.execute("SELECT run_date, rank, item_id, score, model FROM genrec.recommendations_latest "
                            "WHERE user_id = %s ORDER BY rank", (user_id,))
            else:
                cur.execute("SELECT run_date, rank, item_id, score, model FROM genrec.recommendations "
                            "WHERE run_date = %s AND user_id = %s ORDER BY rank", (run_date, user_id))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        conn.close()
