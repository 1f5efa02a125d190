"""`genrec bench publish`: the whole Postgres publish against a raw-COPY floor and pandas.to_sql.

In one run, on one server: (1) the floor, a single raw COPY of an already-built CSV buffer
into a bare table, and beside it the same in binary COPY, the format the publish sends; (2) the
whole publish of the same rows read from Parquet part files (COPY over parallel connections,
index builds, ANALYZE, atomic swap); (3) the same publish again while 4 reader processes look
up single users' lists, for p50/p99 latency; (4) `pandas.DataFrame.to_sql` on a sample, what
users would otherwise write.
"""

from __future__ import annotations

import datetime as dt
import io
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg2 import sql

from genrec_core.contract import RECOMMENDATION_COLUMNS
from genrec_core.dev.benchmarks.common import peak_rss_mb, percentile

RUN_DATE = dt.date(2026, 11, 20)


def synthetic_lists(
    users: int, k: int, start_user: int, run_date: dt.date, n_items: int = 100_000, seed: int = 0
) -> pa.Table:
    """k rows per user, as the scorer writes them."""
    rng = np.random.default_rng(seed + start_user)
    user_idx = np.repeat(np.arange(start_user, start_user + users), k)
    ranks = np.tile(np.arange(1, k + 1, dtype=np.int32), users)
    items = rng.integers(0, n_items, size=users * k)
    return pa.table(
        {
            "run_date": pa.array(np.full(users * k, np.datetime64(run_date.isoformat(), "D")), pa.date32()),
            "user_id": pa.compute.binary_join_element_wise("u", pa.array(np.char.zfill(user_idx.astype(str), 8)), ""),
            "rank": pa.array(ranks, pa.int32()),
            "item_id": pa.compute.binary_join_element_wise("i", pa.array(np.char.zfill(items.astype(str), 6)), ""),
            "score": pa.array(np.sort(rng.random(users * k))[::-1], pa.float64()),
            "model": pa.array(np.full(users * k, "mult_vae")),
            "source": pa.array(np.full(users * k, "model")),
        }
    )


def write_parts(folder: Path, rows: int, k: int, part_rows: int) -> list[Path]:
    users, per_part = rows // k, part_rows // k
    paths = []
    for i, start in enumerate(range(0, users, per_part)):
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(synthetic_lists(min(per_part, users - start), k, start, RUN_DATE), path)
        paths.append(path)
    return paths


def _copy_floor(dsn: str, paths: list[Path], binary: bool = False) -> float:
    """Rows/s of one raw COPY of a buffer built beforehand (not timed) into a bare table: CSV, the issue's floor,
    or binary, the floor of the format the publish sends."""
    from genrec_core.publish.binary_copy import encode_rows
    from genrec_core.publish.connection import connect
    from genrec_core.publish.postgres import FIELD_KINDS

    tables = [pq.read_table(path).select(list(RECOMMENDATION_COLUMNS)) for path in paths]
    if binary:
        buffer = io.BytesIO(encode_rows(pa.concat_tables(tables), {c: FIELD_KINDS[c] for c in RECOMMENDATION_COLUMNS}))
    else:
        buffer = io.BytesIO()
        for table in tables:
            pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    del tables
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS public.copy_floor")
        cur.execute("CREATE TABLE public.copy_floor (LIKE genrec.recommendations)")
    buffer.seek(0)
    started = time.perf_counter()
    with conn, conn.cursor() as cur:
        names = sql.SQL(", ").join(map(sql.Identifier, RECOMMENDATION_COLUMNS))
        statement = sql.SQL("COPY public.copy_floor ({}) FROM STDIN WITH (FORMAT {})").format(
            names, sql.SQL("binary" if binary else "csv")
        )
        cur.copy_expert(statement.as_string(conn), buffer)
    seconds = time.perf_counter() - started
    with conn, conn.cursor() as cur:
        cur.execute("DROP TABLE public.copy_floor")
    conn.close()
    return rows / seconds


def _reader(dsn: str, users: int, k: int, stop: Any, ready: Any, out: Any, seed: int) -> None:
    import psycopg2

    rng = np.random.default_rng(seed)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    latencies, empty, partial = [], 0, 0
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM genrec.recommendations_latest LIMIT 1")  # connected, view resolved
        ready.release()
        while not stop.is_set():
            user = f"u{rng.integers(0, users):08d}"
            started = time.perf_counter()
            cur.execute(
                "SELECT rank, item_id, score FROM genrec.recommendations_latest WHERE user_id = %s ORDER BY rank",
                (user,),
            )
            rows = cur.fetchall()
            latencies.append((time.perf_counter() - started) * 1000.0)
            empty += not rows
            partial += bool(rows) and [r[0] for r in rows] != list(range(1, k + 1))  # a list not whole
    conn.close()
    out.put((latencies, empty, partial))


def _publish(dsn: str, paths: list[Path], workers: int) -> tuple[float, dict[str, float]]:
    from genrec_core.publish.postgres import publish_postgres

    started = time.perf_counter()
    result = publish_postgres(dsn, RUN_DATE, (pq.read_table(p) for p in paths), {"model": "bench"}, workers=workers)
    return time.perf_counter() - started, result.timings


def _to_sql(dsn: str, paths: list[Path], sample_rows: int) -> float:
    import sqlalchemy

    frame = pa.concat_tables([pq.read_table(p) for p in paths]).slice(0, sample_rows).to_pandas()
    engine = sqlalchemy.create_engine(dsn.replace("postgresql://", "postgresql+psycopg2://", 1))
    started = time.perf_counter()
    frame.to_sql("to_sql_sample", engine, schema="public", if_exists="replace", index=False, chunksize=10_000)
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP TABLE public.to_sql_sample"))
    engine.dispose()
    return len(frame) / seconds


def run(
    dsn: str,
    rows: int,
    k: int = 10,
    readers: int = 4,
    workers: int = 2,
    to_sql_rows: int = 1_000_000,
    part_rows: int = 500_000,
    settle_s: float = 1.0,
) -> dict[str, Any]:
    from genrec_core.publish.migrations import upgrade

    upgrade(dsn)
    folder = Path(tempfile.mkdtemp(prefix="genrec-bench-publish-"))
    try:
        paths = write_parts(folder, rows, k, part_rows)
        floor = _copy_floor(dsn, paths)
        binary_floor = _copy_floor(dsn, paths, binary=True)
        publish_s, timings = _publish(dsn, paths, workers)

        ctx = mp.get_context("spawn")
        stop, ready, out = ctx.Event(), ctx.Semaphore(0), ctx.Queue()
        procs = [ctx.Process(target=_reader, args=(dsn, rows // k, k, stop, ready, out, i)) for i in range(readers)]
        for proc in procs:
            proc.start()
        for _ in procs:  # every reader connected before the republish starts (spawned processes start slowly)
            if not ready.acquire(timeout=120):
                raise RuntimeError("a reader process did not connect within 120 s")
        time.sleep(settle_s)  # and reading for a moment
        loaded_s, _ = _publish(dsn, paths, workers)
        stop.set()
        results = [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join()
        latencies = [ms for result in results for ms in result[0]]
        empty = sum(r[1] for r in results)
        partial = sum(r[2] for r in results)

        to_sql = _to_sql(dsn, paths, min(to_sql_rows, rows))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    publish_rate = rows / publish_s
    return {
        "rows": rows,
        "publish_rows_per_s": round(publish_rate),
        "copy_floor_rows_per_s": round(floor),
        "to_sql_rows_per_s": round(to_sql),
        "ratio_to_copy_floor": round(publish_rate / floor, 3),
        "copy_floor_binary_rows_per_s": round(binary_floor),  # the same raw COPY in the format the publish sends
        "ratio_to_binary_copy_floor": round(publish_rate / binary_floor, 3),
        "ratio_to_to_sql": round(publish_rate / to_sql, 1),
        "publish_seconds": round(publish_s, 2),
        "publish_timings_s": {name: round(v, 2) for name, v in timings.items()},
        "publish_under_reads_seconds": round(loaded_s, 2),
        "lookup_p50_ms": round(percentile(latencies, 50), 2),
        "lookup_p99_ms": round(percentile(latencies, 99), 2),
        "lookup_max_ms": round(max(latencies), 2) if latencies else None,
        "lookups": len(latencies),
        "lookups_with_no_rows": empty,
        "lookups_with_a_partial_list": partial,
        "readers": readers,
        "copy_workers": workers,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
