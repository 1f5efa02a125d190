"""Publishing against a real Postgres server and a real S3 HTTP endpoint (moto server)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from genrec_core.errors import DataError, ServiceError
from genrec_core.publish.migrations import upgrade
from genrec_core.publish.object_store import publish_object_store
from genrec_core.publish.postgres import publish_postgres, read_user_recommendations
from genrec_core.storage import Storage, join
from tests.support import lists, query

pytestmark = pytest.mark.integration
D1, D2 = dt.date(2026, 11, 19), dt.date(2026, 11, 20)


def test_migrations_are_idempotent(pg_dsn):
    assert upgrade(pg_dsn) == ["001", "002", "003", "004"]
    assert upgrade(pg_dsn) == []
    assert query(pg_dsn, "SELECT version FROM genrec.schema_migrations ORDER BY 1") == [
        ("001",),
        ("002",),
        ("003",),
        ("004",),
    ]


def test_publish_then_rerun_replaces_the_date_exactly(pg_dsn):
    upgrade(pg_dsn)
    assert publish_postgres(pg_dsn, D1, [lists(D1, 20, 5, "old")], {"model": "old"}).rows == 100
    assert publish_postgres(pg_dsn, D1, [lists(D1, 8, 3, "new")], {"model": "new"}).rows == 24
    assert query(pg_dsn, "SELECT count(*), min(model), max(model) FROM genrec.recommendations") == [(24, "new", "new")]
    tables = query(
        pg_dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'genrec' AND tablename LIKE 'recommendations_%'"
    )
    assert tables == [(1,)]  # no staging table left behind


def test_latest_view_serves_the_newest_published_date(pg_dsn):
    upgrade(pg_dsn)
    publish_postgres(pg_dsn, D2, [lists(D2, 3, 2)], {"model": "m"})
    publish_postgres(pg_dsn, D1, [lists(D1, 5, 2)], {"model": "m"})  # a backfill of an older date
    assert query(pg_dsn, "SELECT DISTINCT run_date FROM genrec.recommendations_latest") == [(D2,)]
    assert [r["item_id"] for r in read_user_recommendations(pg_dsn, "u1")] == ["i2", "i3"]
    assert len(read_user_recommendations(pg_dsn, "u4", D1)) == 2
    assert query(pg_dsn, "SELECT run_date, status, rows_published FROM genrec.runs ORDER BY run_id") == [
        (D2, "published", 6),
        (D1, "published", 10),
    ]


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
    from genrec_core.dev.services.local_postgres import free_port

    dsn = f"postgresql://genrec:secret-pw@127.0.0.1:{free_port()}/genrec"
    with pytest.raises(ServiceError, match="cannot connect to Postgres") as info:
        publish_postgres(dsn, D1, [lists(D1, 1, 1)], {"model": "m"})
    assert "secret-pw" not in str(info.value)


def test_large_parts_use_multipart_upload(s3_storage, s3_bucket, s3_endpoint):
    import os

    import boto3

    uri = join(s3_bucket, "big.bin")
    s3_storage.write_bytes(uri, os.urandom(24 * 1024 * 1024))
    head = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).head_object(Bucket=s3_bucket[5:], Key="big.bin")
    assert head["ContentLength"] == 24 * 1024 * 1024
    assert "-" in head["ETag"]  # S3 gives multipart objects an ETag of the form "<md5>-<parts>"


def test_object_retention_keeps_the_window_and_the_served_models(s3_storage, s3_bucket):
    from genrec_core.publish.lake import Lake
    from genrec_core.publish.object_store import apply_object_retention

    days = [dt.date(2026, 11, d) for d in (17, 18, 19, 20)]
    old_model = join(s3_bucket, "models", "m", "dt=2026-11-17")
    in_flight = join(s3_bucket, "extract", "dt=2026-11-16", "stats.json")  # an older date, not yet published
    s3_storage.write_json(in_flight, {})
    s3_storage.write_bytes(join(old_model, "weights.pt"), b"w")
    for day in days:
        staged = join(s3_bucket, "scored", f"dt={day}")
        s3_storage.write_table(join(staged, "part-00000.parquet"), lists(day, 2, 2))
        s3_storage.write_json(join(s3_bucket, "extract", f"dt={day}", "stats.json"), {})
        if day != days[0]:
            s3_storage.write_bytes(join(s3_bucket, "models", "m", f"dt={day}", "weights.pt"), b"w")
        # the newest date is served by the model trained on the 17th (say the gate kept it)
        model_uri = old_model if day == days[-1] else join(s3_bucket, "models", "m", f"dt={day}")
        publish_object_store(s3_storage, s3_bucket, day, s3_storage.list_files(staged), {"model_uri": model_uri})
        # fewer dates published than kept: nothing goes, not even an older unpublished date's files
        # (a backfill of it may be running beside the nightly run and still need its extract and model)
        assert apply_object_retention(s3_storage, s3_bucket, keep_dates=len(days) + 1) == []
    assert s3_storage.exists(in_flight)
    removed = apply_object_retention(s3_storage, s3_bucket, keep_dates=2)
    assert sorted(u.replace(s3_bucket + "/", "") for u in removed) == [
        "extract/dt=2026-11-16",
        "extract/dt=2026-11-17",
        "extract/dt=2026-11-18",
        "models/m/dt=2026-11-18",
        "scored/dt=2026-11-17",
        "scored/dt=2026-11-18",
        "tables/recommendations/run_date=2026-11-17",
        "tables/recommendations/run_date=2026-11-18",
    ]
    assert s3_storage.exists(join(old_model, "weights.pt"))
    assert sorted(Lake(s3_storage, s3_bucket).publications()) == days[2:]


def test_a_date_older_than_the_kept_window_fails_the_data_checks(tmp_path):
    from genrec_core.handoffs import Extracted
    from genrec_core.pipeline import check_data
    from tests.support import make_settings

    output = (tmp_path / "out").as_uri()
    stats = {"users": 3, "items": 3, "rejected_share": 0.0}

    def extracted(day: dt.date) -> Extracted:
        return Extracted(f"{output}/extract/dt={day}", {**stats, "run_date": day.isoformat()})

    storage = Storage()
    for day in (D1, D2):
        publish_object_store(storage, output, day, [_parts(storage, tmp_path, day)], {"model_uri": "m"})
    settings = make_settings((tmp_path / "events").as_uri(), output, keep_dates=2)
    old = D1 - dt.timedelta(days=1)
    with pytest.raises(DataError, match=f"run date {old} is older than the 2 published dates retention keeps"):
        check_data(settings, extracted(old))
    check_data(settings, extracted(D1))  # inside the window: passes (returns nothing, raises nothing)
    # with room in the window (or fewer dates published than kept) any date may be backfilled
    check_data(make_settings((tmp_path / "events").as_uri(), output, keep_dates=3), extracted(old))


def _parts(storage: Storage, tmp_path, day: dt.date) -> str:
    uri = (tmp_path / f"parts-{day}.parquet").as_uri()
    storage.write_table(uri, lists(day, 2, 2))
    return uri


def test_parts_with_another_model_keep_their_model(pg_dsn):
    upgrade(pg_dsn)
    parts = [lists(D1, 3, 2, "a"), lists(D1, 3, 2, "b").set_column(1, "user_id", pa.array(["x"] * 6))]
    assert publish_postgres(pg_dsn, D1, parts, {"model": "a"}).rows == 12
    assert query(pg_dsn, "SELECT model, count(*), min(run_date) FROM genrec.recommendations GROUP BY 1 ORDER BY 1") == [
        ("a", 6, D1),
        ("b", 6, D1),
    ]
    defaults = query(
        pg_dsn,
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'genrec' "
        "AND table_name = 'recommendations_20261119' AND column_default IS NOT NULL "
        "AND column_name IN ('run_date', 'model')",
    )
    assert defaults == [(0,)]  # the load-time defaults do not outlive the load
