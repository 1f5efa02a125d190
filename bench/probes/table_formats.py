"""The probe behind the README's "Why Delta and not Iceberg": both formats against one moto S3 endpoint.

Not part of genrec (pyiceberg is not a dependency). Run it in a throwaway venv beside the project's:

    python -m venv /tmp/probe && /tmp/probe/bin/pip install -q -c constraints.txt -e . \
        'moto[server]' 'pyiceberg[sql-sqlite]==0.12.0'
    /tmp/probe/bin/python bench/probes/table_formats.py

It prints, per format: whether a partition overwrite of one date leaves the other dates and replaces
the date exactly, whether four concurrent commits of four dates all land, and the seconds to write
2M rows, beside pyarrow writing the same rows as one plain Parquet file to the same endpoint.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
import time

import boto3
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from genrec_core.dev.services.moto_s3 import moto_s3

KEYS = {"aws_access_key_id": "probe", "aws_secret_access_key": "probe"}


def lists(day: dt.date, n: int, model: str = "m") -> pa.Table:
    return pa.table(
        {
            "run_date": pa.array([day] * n, pa.date32()),
            "user_id": pa.array([f"u{i:08d}" for i in range(n)]),
            "rank": pa.array([1] * n, pa.int32()),
            "item_id": pa.array([f"i{i % 5000:06d}" for i in range(n)]),
            "score": pa.array([0.5] * n, pa.float64()),
            "model": pa.array([model] * n),
            "source": pa.array(["model"] * n),
        }
    )


def concurrently(write, days: list[dt.date]) -> list[str]:
    errors: list[str] = []

    def one(day: dt.date) -> None:
        try:
            write(lists(day, 100))
        except Exception as exc:  # a probe reports every failure
            errors.append(f"{type(exc).__name__}: {exc}"[:160])

    threads = [threading.Thread(target=one, args=(d,)) for d in days]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def delta(endpoint: str, bucket: str) -> dict:
    from deltalake import DeltaTable, write_deltalake

    options = {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}
    options |= {"AWS_ACCESS_KEY_ID": "probe", "AWS_SECRET_ACCESS_KEY": "probe"}
    uri = f"s3://{bucket}/delta"

    def write(table: pa.Table) -> None:
        day = table["run_date"][0].as_py()
        write_deltalake(
            uri,
            table,
            partition_by=["run_date"],
            mode="overwrite",
            predicate=f"run_date = '{day}'",
            storage_options=options,
        )

    d1, d2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    write(lists(d1, 10, "old"))
    write(lists(d2, 10))
    write(lists(d1, 5, "new"))
    counts = (
        DeltaTable(uri, storage_options=options)
        .to_pyarrow_table()
        .group_by(["run_date", "model"])
        .aggregate([("user_id", "count")])
    )
    errors = concurrently(write, [dt.date(2026, 2, d) for d in range(1, 5)])
    dates = set(DeltaTable(uri, storage_options=options).to_pyarrow_table()["run_date"].to_pylist())
    big = lists(dt.date(2026, 5, 1), 2_000_000)
    started = time.perf_counter()
    write(big)
    return {
        "overwrite": sorted(map(str, counts.to_pylist()), key=str),
        "concurrent_errors": errors,
        "dates": len(dates),
        "write_2M_s": round(time.perf_counter() - started, 2),
    }


def iceberg(endpoint: str, bucket: str) -> dict:
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(
        "probe",
        uri=f"sqlite:///{tempfile.mkdtemp()}/catalog.db",
        warehouse=f"s3://{bucket}/iceberg",
        **{"s3.endpoint": endpoint, "s3.access-key-id": "probe", "s3.secret-access-key": "probe"},
        **{"s3.region": "us-east-1"},
    )
    catalog.create_namespace_if_not_exists("genrec")
    table = catalog.create_table_if_not_exists("genrec.recommendations", schema=lists(dt.date(2026, 1, 1), 1).schema)
    with table.update_spec() as spec:
        spec.add_identity("run_date")

    def write(rows: pa.Table) -> None:
        catalog.load_table("genrec.recommendations").dynamic_partition_overwrite(rows)

    d1, d2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    write(lists(d1, 10, "old"))
    write(lists(d2, 10))
    write(lists(d1, 5, "new"))
    scan = catalog.load_table("genrec.recommendations").scan().to_arrow()
    counts = scan.group_by(["run_date", "model"]).aggregate([("user_id", "count")])
    errors = concurrently(write, [dt.date(2026, 2, d) for d in range(1, 5)])
    dates = set(catalog.load_table("genrec.recommendations").scan().to_arrow()["run_date"].to_pylist())
    big = lists(dt.date(2026, 5, 1), 2_000_000)
    started = time.perf_counter()
    write(big)
    return {
        "overwrite": sorted(map(str, counts.to_pylist()), key=str),
        "concurrent_errors": errors,
        "dates": len(dates),
        "write_2M_s": round(time.perf_counter() - started, 2),
    }


def plain(endpoint: str, bucket: str) -> dict:
    host = endpoint.split("://", 1)[1]
    fs = pafs.S3FileSystem(endpoint_override=host, scheme="http", access_key="probe", secret_key="probe")
    big = lists(dt.date(2026, 5, 1), 2_000_000)
    started = time.perf_counter()
    pq.write_table(big, f"{bucket}/plain/part-0.parquet", filesystem=fs)
    return {"write_2M_s": round(time.perf_counter() - started, 2)}


def main() -> None:
    with moto_s3() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **KEYS)
        for name, probe in (("delta", delta), ("iceberg", iceberg), ("plain parquet", plain)):
            bucket = f"probe-{name.replace(' ', '-')}"
            s3.create_bucket(Bucket=bucket)
            print(name, probe(endpoint, bucket), flush=True)


if __name__ == "__main__":
    main()
