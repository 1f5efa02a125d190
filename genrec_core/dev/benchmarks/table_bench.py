"""`genrec bench publish --target object-store`: the Delta table publish against plain Parquet parts.

In one run, against one S3 endpoint (moto's server, started here, unless `endpoint` names another):
(1) the floor, the same rows written as plain Parquet part files (pyarrow: encode and upload) plus a
manifest, the 0.4 layout; (2) the publish of the date to the Delta table from the same staged parts;
each twice, interleaved, the faster of each kept (the machine is shared). Then, with DuckDB over the
endpoint, the same reads of both layouts: one user's list (the median of `lookups`), and a full read of
the date (the fastest of 3).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from genrec_core.dev import duckdb_reader
from genrec_core.dev.benchmarks.common import peak_rss_mb
from genrec_core.dev.benchmarks.publish_bench import RUN_DATE, write_parts
from genrec_core.storage import S3Options, Storage, join

KEYS = {"access_key_id": "bench", "secret_access_key": "bench", "region": "us-east-1"}


def _plain(storage: Storage, out: str, paths: list[Path]) -> float:
    """The floor: each staged part re-encoded and uploaded as a Parquet part, then a manifest."""
    started = time.perf_counter()
    total = 0
    for i, path in enumerate(paths):
        table = pq.read_table(path)
        storage.write_table(join(out, f"part-{i:05d}.parquet"), table)
        total += table.num_rows
    storage.write_json(join(out, "_manifest.json"), {"rows": total, "files": len(paths)})
    return time.perf_counter() - started


def _table(storage: Storage, out: str, paths: list[Path]) -> float:
    from genrec_core.publish.lake import Lake

    def parts() -> Iterator[pa.Table]:
        return (pq.read_table(path) for path in paths)

    started = time.perf_counter()
    Lake(storage, out).publish(RUN_DATE, parts, {"model": "bench", "model_version": "bench@1", "run_id": "bench"})
    return time.perf_counter() - started


def _timed(con: Any, sql: str, params: list[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = con.execute(sql, params).fetch_arrow_table()
    return time.perf_counter() - started, result


def _reads(con: Any, sources: dict[str, tuple[str, str]], users: int, lookups: int) -> dict[str, Any]:
    """`sources`: name -> (table function, its argument), e.g. ("delta_scan", "s3://b/tables/recommendations")."""
    out: dict[str, Any] = {}
    step = max(1, users // lookups)
    picks = [f"u{u:08d}" for u in range(0, users, step)][:lookups]
    for name, (function, location) in sources.items():
        source = {"delta_scan": "delta_scan(?)", "read_parquet": "read_parquet(?)"}[function]
        lookup = "SELECT rank, item_id FROM " + source + " WHERE run_date = ? AND user_id = ? ORDER BY rank"
        times = []
        for user in picks:
            seconds, table = _timed(con, lookup, [location, RUN_DATE, user])
            assert table.num_rows > 0, f"{name}: no list for {user}"
            times.append(seconds)
        full = []
        for _ in range(3):
            seconds, table = _timed(con, "SELECT * FROM " + source + " WHERE run_date = ?", [location, RUN_DATE])
            full.append(seconds)
        out[name] = {
            "lookup_median_ms": round(statistics.median(times) * 1000, 1),
            "full_read_s": round(min(full), 2),
            "full_read_rows": table.num_rows,
        }
    return out


def run(rows: int, k: int = 10, part_rows: int = 500_000, lookups: int = 20, endpoint: str | None = None) -> dict:
    if endpoint is None:
        from genrec_core.dev.services.moto_s3 import moto_s3

        with moto_s3() as started:
            return {**_run(rows, k, part_rows, lookups, started), "endpoint": "moto server (its own process)"}
    return {**_run(rows, k, part_rows, lookups, endpoint), "endpoint": endpoint}


def _run(rows: int, k: int, part_rows: int, lookups: int, endpoint: str) -> dict[str, Any]:
    import boto3

    bucket = f"genrec-bench-{int(time.time())}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEYS["access_key_id"],
        aws_secret_access_key=KEYS["secret_access_key"],
        region_name=KEYS["region"],
    ).create_bucket(Bucket=bucket)
    storage = Storage(S3Options(endpoint_url=endpoint, **KEYS))
    folder = Path(tempfile.mkdtemp(prefix="genrec-bench-table-"))
    try:
        paths = write_parts(folder, rows, k, part_rows)
        plain_out = f"s3://{bucket}/plain/dt={RUN_DATE}"
        table_out = f"s3://{bucket}/lake"
        plain_s, table_s = [], []
        for _ in range(2):
            plain_s.append(_plain(storage, plain_out, paths))
            table_s.append(_table(storage, table_out, paths))
        con = duckdb_reader.connect(storage.s3_options)
        sources = {
            "table": ("delta_scan", f"{table_out}/tables/recommendations"),
            "manifest_layout": ("read_parquet", f"{plain_out}/*.parquet"),
        }
        reads = _reads(con, sources, rows // k, lookups)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    plain_rate, table_rate = rows / min(plain_s), rows / min(table_s)
    return {
        "target": "object-store",
        "rows": rows,
        "table_rows_per_s": round(table_rate),
        "plain_parquet_rows_per_s": round(plain_rate),
        "ratio_to_plain_parquet": round(table_rate / plain_rate, 3),
        "table_seconds": [round(s, 2) for s in table_s],
        "plain_parquet_seconds": [round(s, 2) for s in plain_s],
        "reads": reads,
        "lookup_ratio_table_to_manifest_layout": round(
            reads["table"]["lookup_median_ms"] / reads["manifest_layout"]["lookup_median_ms"], 2
        ),
        "full_read_ratio_table_to_manifest_layout": round(
            reads["table"]["full_read_s"] / reads["manifest_layout"]["full_read_s"], 2
        ),
        "part_rows": part_rows,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "run_date": dt.date.isoformat(RUN_DATE),
    }


if __name__ == "__main__":  # pragma: no cover - a quick look: python -m genrec_core.dev.benchmarks.table_bench
    print(json.dumps(run(200_000), indent=2))
