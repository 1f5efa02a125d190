"""Publishing against a real Postgres server and a real S3 HTTP endpoint (moto server)."""

from __future__ import annotations

import datetime as dt

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genrec_core.errors import DataError, ServiceError
from genrec_core.publish.migrations import upgrade
from genrec_core.publish.object_store import MANIFEST, publish_object_store, recommendations_uri
from genrec_core.publish.postgres import publish_postgres, read_user_recommendations
from genrec_core.storage import join

pytestmark = pytest.mark.integration
D1, D2 = dt.date(2026, 11, 19), dt.date(2026, 11, 20)


def lists(run_date: dt.date, users: int, k: int, model: str = "m") -> pa.Table:
    rows = [(run_date, f"u{u}", r, f"i{(u + r) % 50}", 1.0 / r, model) for u in range(users) for r in range(1, k + 1)]
    cols = list(zip(*rows))
    return pa.table({"run_date": pa.array(cols[0], pa.date32()), "user_id": cols[1],
                     "rank": pa.array(cols[2], pa.int32()), "item_id": cols[3], "score": cols[4], "model": cols[5]})


def query(dsn: str, sql: str, *args: object) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(sql, args or None)
        result = cur.fetchall()
    conn.close()
    return result


def test_migrations_are_idempotent(pg_dsn):
    assert upgrade(pg_dsn) == ["001"]
    assert upgrade(pg_dsn) == []
    assert query(pg_dsn, "SELECT version FROM genrec.schema_migrations") == [("001",)]


def test_publish_then_rerun_replaces_the_date_exactly(pg_dsn):
    upgrade(pg_dsn)
    assert publish_postgres(pg_dsn, D1, [lists(D1, 20, 5, "old")], {"model": "old"}) == 100
    assert publish_postgres(pg_dsn, D1, [lists(D1, 8, 3, "new")], {"model": "new"}) == 24
    assert query(pg_dsn, "SELECT count(*), min(model), max(model) FROM genrec.recommendations") == [(24, "new", "new")]
    tables = query(pg_dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'genrec' AND tablename LIKE "
                           "'recommendations_%'")
    assert tables == [(1,)]  # no staging table left behind


def test_latest_view_serves_the_newest_published_date(pg_dsn):
    upgrade(pg_dsn)
    publish_postgres(pg_dsn, D2, [lists(D2, 3, 2)], {"model": "m"})
    publish_postgres(pg_dsn, D1, [lists(D1, 5, 2)], {"model": "m"})  # a backfill of an older date
    assert query(pg_dsn, "SELECT DISTINCT run_date FROM genrec.recommendations_latest") == [(D2,)]
    assert [r["item_id"] for r in read_user_recommendations(pg_dsn, "u1")] == ["i2", "i3"]
    assert len(read_user_recommendations(pg_dsn, "u4", D1)) == 2
    assert query(pg_dsn, "SELECT run_date, status, rows_published FROM genrec.runs ORDER BY run_id") == [
        (D2, "published", 6), (D1, "published", 10)]


def test_empty_batch_is_refused_and_previous_lists_stay(pg_dsn):
    upgrade(pg_dsn)
    publish_postgres(pg_dsn, D1, [lists(D1, 4, 2)], {"model": "m"})
    with pytest.raises(DataError, match="empty batch"):
        publish_postgres(pg_dsn, D1, [], {"model": "m"})
    assert query(pg_dsn, "SELECT count(*) FROM genrec.recommendations WHERE run_date = %s", D1) == [(8,)]


def test_rows_of_another_date_are_refused(pg_dsn):
    upgrade(pg_dsn)
    with pytest.raises(DataError, match="run_date other than"):
        publish_postgres(pg_dsn, D1, [lists(D2, 2, 2)], {"model": "m"})
    assert query(pg_dsn, "SELECT count(*) FROM genrec.recommendations") == [(0,)]


def test_dead_database_gives_a_clear_error():
    from genrec_core.services.local_postgres import free_port

    dsn = f"postgresql://genrec:secret-pw@127.0.0.1:{free_port()}/genrec"
    with pytest.raises(ServiceError, match="cannot connect to Postgres") as info:
        publish_postgres(dsn, D1, [lists(D1, 1, 1)], {"model": "m"})
    assert "secret-pw" not in str(info.value)


def test_object_store_publish_writes_manifest_last_and_rerun_replaces(s3_storage, s3_bucket):
    staged = join(s3_bucket, "scored", "dt=2026-11-20")
    s3_storage.write_table(join(staged, "part-00000.parquet"), lists(D2, 10, 3))
    s3_storage.write_table(join(staged, "part-00001.parquet"), lists(D2, 5, 3))
    manifest = publish_object_store(s3_storage, s3_bucket, D2, staged, {"model": "m"})
    target = recommendations_uri(s3_bucket, D2)
    assert manifest["rows"] == 45 and [f["rows"] for f in manifest["files"]] == [30, 15]
    assert s3_storage.read_json(join(target, MANIFEST)) == manifest
    assert s3_storage.read_table(target).num_rows == 45

    # a rerun with fewer parts leaves no stale part behind
    s3_storage.delete_dir(staged)
    s3_storage.write_table(join(staged, "part-00000.parquet"), lists(D2, 2, 3))
    manifest = publish_object_store(s3_storage, s3_bucket, D2, staged, {"model": "m"})
    names = [u.rsplit("/", 1)[-1] for u in s3_storage.list_files(target)]
    assert names == [MANIFEST, "part-00000.parquet"] and manifest["rows"] == 6


def test_object_store_refuses_an_empty_batch(s3_storage, s3_bucket):
    with pytest.raises(DataError, match="no staged part files"):
        publish_object_store(s3_storage, s3_bucket, D2, join(s3_bucket, "scored", "dt=2026-11-20"), {})
    assert not s3_storage.exists(join(recommendations_uri(s3_bucket, D2), MANIFEST))


def test_manifest_checksums_match_the_files(s3_storage, s3_bucket):
    import hashlib

    staged = join(s3_bucket, "scored", "dt=2026-11-20")
    s3_storage.write_table(join(staged, "part-00000.parquet"), lists(D2, 3, 2))
    manifest = publish_object_store(s3_storage, s3_bucket, D2, staged, {})
    for entry in manifest["files"]:
        data = s3_storage.read_bytes(join(recommendations_uri(s3_bucket, D2), entry["name"]))
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows == entry["rows"]
