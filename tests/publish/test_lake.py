"""The object-store output as Delta tables, against the real S3 endpoint (moto's server) and local disk:
atomic per-date commits, concurrent publishers, readers in other engines, time travel, the serving pointer,
retention, the 0.4 migration, and faults (a killed publisher, the endpoint cut before the commit)."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from genrec_core.dev import duckdb_reader
from genrec_core.dev.services.local_postgres import free_port
from genrec_core.errors import DataError
from genrec_core.evaluate.champion import champion
from genrec_core.layout import recommendations_uri
from genrec_core.publish.lake import LISTS, PUBLICATIONS, Lake, table_uri
from genrec_core.publish.object_store import (
    MANIFEST,
    apply_object_retention,
    migrate_manifests,
    publish_object_store,
    published,
)
from genrec_core.storage import S3Options, Storage, join
from tests.support import S3_KEYS, lists

pytestmark = pytest.mark.integration
D1, D2, D3, D4 = (dt.date(2026, 11, d) for d in (17, 18, 19, 20))


def _stage(storage: Storage, output: str, day: dt.date, users: int, model: str = "m", parts: int = 2) -> list[str]:
    table = lists(day, users, 3, model)
    step = -(-table.num_rows // parts)
    uris = []
    for i in range(parts):
        uri = join(output, "scored", f"dt={day}", f"part-{i:05d}.parquet")
        storage.write_table(uri, table.slice(i * step, step))
        uris.append(uri)
    return uris


def _info(day: dt.date, model: str = "m") -> dict[str, str]:
    return {
        "model": model,
        "model_version": f"{model}@{day}",
        "model_uri": f"s3://models/{model}/{day}",
        "run_id": "r1",
    }


def _publish(storage: Storage, output: str, day: dt.date, users: int, model: str = "m") -> None:
    publish_object_store(storage, output, day, _stage(storage, output, day, users, model), _info(day, model))


def _duck(s3_endpoint: str):
    return duckdb_reader.connect(S3Options(endpoint_url=s3_endpoint, **S3_KEYS))


def _served_by_duckdb(con, output: str) -> list[tuple]:
    """What a reader following the serving pointer sees: (run_date, rows, models)."""
    return con.execute(
        f"""SELECT r.run_date, count(*), string_agg(DISTINCT r.model, ',')
            FROM delta_scan('{table_uri(output, LISTS)}') r
            JOIN delta_scan('{table_uri(output, "serving")}') s ON r.run_date = s.run_date
            GROUP BY 1"""
    ).fetchall()


def test_a_publish_commits_the_date_records_it_and_other_engines_read_it(s3_storage, s3_bucket, s3_endpoint):
    _publish(s3_storage, s3_bucket, D1, 10, "old")
    lake = Lake(s3_storage, s3_bucket)
    assert lake.read_date(D1).sort_by([("user_id", "ascending"), ("rank", "ascending")]).to_pylist() == (
        lists(D1, 10, 3, "old").sort_by([("user_id", "ascending"), ("rank", "ascending")]).to_pylist()
    )
    record = lake.publications()[D1]
    assert (record.rows, record.model_version, record.run_id) == (30, f"old@{D1}", "r1")
    assert lake.serving_date() == D1
    commit = lake.table(LISTS).history(1)[0]  # the commit says which model and run wrote it
    assert (commit["genrec.model_version"], commit["genrec.run_id"], commit["genrec.run_date"]) == (
        f"old@{D1}",
        "r1",
        D1.isoformat(),
    )

    con = _duck(s3_endpoint)  # DuckDB over the endpoint, extensions from pip
    assert _served_by_duckdb(con, s3_bucket) == [(D1, 30, "old")]
    lookup = con.execute(
        f"SELECT rank, item_id FROM delta_scan('{table_uri(s3_bucket, LISTS)}') "
        "WHERE run_date = ? AND user_id = 'u4' ORDER BY rank",
        [D1],
    ).fetchall()
    assert lookup == [(1, "i5"), (2, "i6"), (3, "i7")]

    import polars as pl

    frame = pl.read_delta(
        table_uri(s3_bucket, LISTS),
        storage_options={
            "AWS_ENDPOINT_URL": s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
    )
    assert frame.height == 30 and frame.columns == [
        "run_date",
        "user_id",
        "rank",
        "item_id",
        "score",
        "model",
        "source",
    ]


def test_a_rerun_replaces_the_date_in_one_commit_and_the_earlier_snapshot_stays_readable(tmp_path):
    storage, output = Storage(), tmp_path.as_uri()
    _publish(storage, output, D1, 10, "old")
    _publish(storage, output, D2, 4, "m")
    lake = Lake(storage, output)
    before = lake.table(LISTS).version()
    time.sleep(0.05)
    between = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    _publish(storage, output, D1, 2, "new")
    assert lake.table(LISTS).version() == before + 1  # the replacement is one commit
    now = lake.read_date(D1)
    assert now.num_rows == 6 and set(now["model"].to_pylist()) == {"new"}
    assert lake.read_date(D2).num_rows == 12  # the other date is untouched
    for then in (before, between):  # time travel, by version and by time
        old = lake.read_date(D1, then)
        assert old.num_rows == 30 and set(old["model"].to_pylist()) == {"old"}
    assert lake.publications()[D1].rows == 6


def test_a_backfill_keeps_serving_the_newest_date_rollback_and_drop_move_it(tmp_path):
    storage, output = Storage(), tmp_path.as_uri()
    _publish(storage, output, D3, 2)
    _publish(storage, output, D1, 2)  # a backfill of an older date
    lake = Lake(storage, output)
    assert lake.serving_date() == D3
    assert lake.serve(D1) == D3 and lake.serving_date() == D1
    with pytest.raises(DataError, match="not published"):
        lake.serve(D2)
    assert lake.drop(D1) == D3  # dropping the served date serves the newest remaining one
    assert sorted(lake.publications()) == [D3] and lake.read_date(D1).num_rows == 0


def test_an_empty_batch_or_another_dates_rows_are_refused_and_the_date_stays(tmp_path):
    storage, output = Storage(), tmp_path.as_uri()
    _publish(storage, output, D1, 3)
    lake = Lake(storage, output)
    with pytest.raises(DataError, match="no staged part files"):
        publish_object_store(storage, output, D1, [], _info(D1))
    with pytest.raises(DataError, match="refusing to publish an empty batch"):
        lake.publish(D1, lambda: iter([lists(D1, 0, 3)]), _info(D1))
    with pytest.raises(Exception, match="hold other run dates"):
        lake.publish(D1, lambda: iter([lists(D2, 2, 3)]), _info(D1))
    assert lake.read_date(D1).num_rows == 9 and lake.read_date(D2).num_rows == 0
    assert sorted(lake.publications()) == [D1]


def _publish_in_child(endpoint: str, output: str, day: dt.date, users: int, model: str) -> None:
    storage = Storage(S3Options(endpoint_url=endpoint, **S3_KEYS))
    Lake(storage, output).publish(day, lambda: iter([lists(day, users, 3, model)]), _info(day, model))
    # Leave without the interpreter's teardown: about 1 child in 45 aborted there ("terminate called without an
    # active exception", no Python frame left) after its commits had landed; not yet diagnosed (README, known issues).
    os._exit(0)


def _run_children(args: list[tuple]) -> None:
    ctx = mp.get_context("spawn")
    children = [ctx.Process(target=_publish_in_child, args=a) for a in args]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=240)
    assert [c.exitcode for c in children] == [0] * len(children)


def test_concurrent_publishes_of_different_dates_all_commit(s3_storage, s3_bucket, s3_endpoint):
    _publish(s3_storage, s3_bucket, D1, 2)
    _run_children([(s3_endpoint, s3_bucket, day, 50 + i, f"m{i}") for i, day in enumerate((D2, D3, D4))])
    lake = Lake(s3_storage, s3_bucket)
    assert {d: p.rows for d, p in lake.publications().items()} == {D1: 6, D2: 150, D3: 153, D4: 156}
    for i, day in enumerate((D2, D3, D4)):
        got = lake.read_date(day)
        assert got.num_rows == 3 * (50 + i) and set(got["model"].to_pylist()) == {f"m{i}"}
    assert lake.serving_date() == D4


def test_concurrent_reruns_of_one_date_leave_one_whole_batch(s3_storage, s3_bucket, s3_endpoint):
    _run_children([(s3_endpoint, s3_bucket, D1, users, f"m{users}") for users in (40, 70)])
    lake = Lake(s3_storage, s3_bucket)
    got = lake.read_date(D1)
    (model,) = set(got["model"].to_pylist())
    assert got.num_rows == {"m40": 120, "m70": 210}[model] == lake.publications()[D1].rows


def test_readers_see_the_old_or_the_new_lists_never_a_mix_or_nothing(s3_storage, s3_bucket, s3_endpoint):
    _publish(s3_storage, s3_bucket, D1, 300, "old")
    seen: set[tuple] = set()
    stop = threading.Event()

    def read() -> None:
        con = _duck(s3_endpoint)
        query = f"SELECT count(*), string_agg(DISTINCT model, ',') FROM delta_scan('{table_uri(s3_bucket, LISTS)}')"
        while not stop.is_set():
            seen.add(con.execute(query + " WHERE run_date = ?", [D1]).fetchone())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for users, model in ((200, "new"), (300, "old"), (200, "new")):
            _publish(s3_storage, s3_bucket, D1, users, model)
    finally:
        stop.set()
        reader.join()
    assert seen and seen <= {(900, "old"), (600, "new")}


def test_retention_deletes_old_dates_vacuums_their_files_and_keeps_the_served_date(s3_storage, s3_bucket):
    for day in (D1, D2, D3, D4):
        _publish(s3_storage, s3_bucket, day, 2)
    lake = Lake(s3_storage, s3_bucket)
    lake.serve(D1)  # an operator rolled back to the oldest date
    assert apply_object_retention(s3_storage, s3_bucket, keep_dates=5) == []
    removed = apply_object_retention(s3_storage, s3_bucket, keep_dates=2, vacuum_hours=0)
    assert join(table_uri(s3_bucket, LISTS), f"run_date={D2}") in removed
    assert sorted(lake.publications()) == [D1, D3, D4]
    assert lake.read_date(D2).num_rows == 0 and lake.read_date(D1).num_rows == 6
    files = s3_storage.list_files(table_uri(s3_bucket, LISTS), ".parquet")
    assert files and not [f for f in files if f"run_date={D2}" in f]  # vacuumed from the store
    assert [f for f in files if f"run_date={D1}" in f]  # the served date's files stay


def _legacy_date(storage: Storage, output: str, day: dt.date, users: int) -> None:
    """A date as 0.4 published it: parts under recommendations/dt=D/ and the manifest written last."""
    folder = recommendations_uri(output, day)
    table = lists(day, users, 3, "legacy")
    storage.write_table(join(folder, "part-00000.parquet"), table)
    manifest = {
        "run_date": day.isoformat(),
        "rows": table.num_rows,
        "files": [{"name": "part-00000.parquet", "rows": table.num_rows}],
        **_info(day, "legacy"),
    }
    storage.write_json(join(folder, MANIFEST), manifest)


def test_a_04_output_keeps_working_and_is_migrated_by_the_first_publish(tmp_path):
    storage, output = Storage(), tmp_path.as_uri()
    _legacy_date(storage, output, D1, 3)
    _legacy_date(storage, output, D2, 4)
    storage.write_table(join(recommendations_uri(output, D3), "part-00000.parquet"), lists(D3, 1, 3))  # no manifest
    # before any publish the champion and retention read the manifests
    assert champion(storage, output, D3)["model_version"] == f"legacy@{D2}"
    assert sorted(published(storage, output)) == [D1, D2]

    _publish(storage, output, D4, 2)  # migrates, then publishes D4
    lake = Lake(storage, output)
    assert {d: p.rows for d, p in lake.publications().items()} == {D1: 9, D2: 12, D4: 6}
    assert lake.read_date(D2).num_rows == 12 and set(lake.read_date(D2)["model"].to_pylist()) == {"legacy"}
    assert lake.serving_date() == D4
    assert storage.exists(join(recommendations_uri(output, D1), MANIFEST))  # old-layout readers keep working
    assert migrate_manifests(storage, output) == []  # once only


def test_the_cli_migrates_ahead_of_the_first_publish(tmp_path, monkeypatch, capsys):
    import json

    from genrec_core import cli

    output = tmp_path.as_uri()
    _legacy_date(Storage(), output, D1, 2)
    monkeypatch.setenv("GENREC_OUTPUT_URI", output)
    assert cli.main(["publish", "migrate"]) == 0
    assert json.loads(capsys.readouterr().out)["migrated"] == [D1.isoformat()]
    assert sorted(Lake(Storage(), output).publications()) == [D1]


@pytest.mark.reliability
def test_a_publisher_killed_mid_upload_leaves_the_previous_snapshot_and_the_retry_completes(
    s3_storage, s3_bucket, s3_endpoint
):
    _publish(s3_storage, s3_bucket, D1, 100, "old")
    child = mp.get_context("spawn").Process(target=_slow_publish, args=(s3_endpoint, s3_bucket))
    child.start()
    lake = Lake(s3_storage, s3_bucket)
    deadline = time.monotonic() + 120
    before = len(s3_storage.list_files(table_uri(s3_bucket, LISTS), ".parquet"))
    while len(s3_storage.list_files(table_uri(s3_bucket, LISTS), ".parquet")) == before:  # its first file is up
        assert child.is_alive() and time.monotonic() < deadline, "the publish never uploaded a file"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    got = lake.read_date(D1)
    assert got.num_rows == 300 and set(got["model"].to_pylist()) == {"old"}  # the previous snapshot, whole
    _publish(s3_storage, s3_bucket, D1, 50, "new")  # the retry
    got = lake.read_date(D1)
    assert got.num_rows == 150 and set(got["model"].to_pylist()) == {"new"}
    lake.vacuum(0)  # and the killed attempt's uncommitted files go with the next vacuum
    assert len(s3_storage.list_files(join(table_uri(s3_bucket, LISTS), f"run_date={D1}"), ".parquet")) == 1


def _slow_publish(endpoint: str, output: str) -> None:
    def parts() -> Iterator[pa.Table]:
        for i in range(200):
            yield lists(D1, 2_000, 10, "killed").slice(i * 100, 100)
            time.sleep(0.05)

    storage = Storage(S3Options(endpoint_url=endpoint, **S3_KEYS))
    # small files, so the first is uploaded long before the commit
    Lake(storage, output, target_file_bytes=64 * 1024).publish(D1, parts, _info(D1, "killed"))


class ProxyProcess:
    """tests/cuttable_proxy.py in its own process, in front of the S3 endpoint."""

    def __init__(self, target: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.cuttable_proxy", str(self.port), target.rsplit(":", 1)[1]],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def cut(self) -> None:
        self.process.send_signal(signal.SIGUSR1)

    def restore(self) -> None:
        self.process.send_signal(signal.SIGUSR2)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.mark.reliability
def test_the_endpoint_cut_before_the_commit_fails_loudly_and_the_retry_completes(s3_endpoint, s3_bucket):
    proxy = ProxyProcess(s3_endpoint)
    try:
        storage = Storage(S3Options(endpoint_url=f"http://127.0.0.1:{proxy.port}", **S3_KEYS))
        quick_failing = {"max_retries": "1", "retry_timeout": "2s", "timeout": "5s", "connect_timeout": "2s"}
        lake = Lake(storage, s3_bucket, client_options=quick_failing)
        lake.publish(D1, lambda: iter([lists(D1, 100, 3, "old")]), _info(D1, "old"))

        def parts_then_cut() -> Iterator[pa.Table]:
            yield lists(D1, 60, 3, "new")
            proxy.cut()  # the rows are handed over; the upload and the commit meet a dead endpoint
            time.sleep(0.3)

        with pytest.raises(Exception, match="(?i)error|connect|request"):
            lake.publish(D1, parts_then_cut, _info(D1, "new"))
        proxy.restore()
        time.sleep(0.3)
        got = lake.read_date(D1)
        assert got.num_rows == 300 and set(got["model"].to_pylist()) == {"old"}
        assert lake.publications()[D1].model == "old"
        lake.publish(D1, lambda: iter([lists(D1, 60, 3, "new")]), _info(D1, "new"))
        got = lake.read_date(D1)
        assert got.num_rows == 180 and set(got["model"].to_pylist()) == {"new"}
    finally:
        proxy.stop()


def test_the_tables_live_beside_the_04_folders_not_inside_them(tmp_path):
    storage, output = Storage(), tmp_path.as_uri()
    _publish(storage, output, D1, 1)
    assert storage.list_dir(join(output, "tables")) == sorted([LISTS, PUBLICATIONS, "serving"])
    assert not storage.exists(join(output, "recommendations"))  # vacuum never meets a 0.4 folder
