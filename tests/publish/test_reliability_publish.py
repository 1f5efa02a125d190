"""Faults during a publish, against the real services: the publishing process killed (SIGKILL) and
retried, Postgres restarted mid-COPY, the S3 endpoint unreachable mid-upload. Each time the
publish fails loudly or the retry recovers; readers see yesterday's or today's complete batch,
never a mix; no row is lost or doubled."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator

import psycopg2
import pyarrow as pa
import pytest

from genrec_core.dev.services.local_postgres import LocalPostgres
from genrec_core.models.registry import load_model
from genrec_core.publish.migrations import upgrade
from genrec_core.publish.postgres import publish_postgres
from genrec_core.storage import Storage
from tests.support import lists, query

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
DAY = dt.date(2026, 11, 20)


def _served(dsn: str) -> tuple[int, int, str | None]:
    """(rows, users, the one model) served by the latest view: a mix would show two models."""
    ((rows, users, models),) = query(
        dsn,
        "SELECT count(*), count(DISTINCT user_id), string_agg(DISTINCT model, ',') FROM genrec.recommendations_latest",
    )
    return rows, users, models


def _stages(dsn: str) -> list[str]:
    return [
        r[0]
        for r in query(
            dsn, "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'recommendations\\_%\\_load\\_%'"
        )
    ]


def _publish_in_child(dsn: str, users: int) -> None:
    slices = (lists(DAY, users, 10, "new").slice(i * 10_000, 10_000) for i in range(users * 10 // 10_000))
    publish_postgres(dsn, DAY, slices, {"model": "new"})


def test_publish_killed_mid_copy_then_retried(pg_dsn):
    upgrade(pg_dsn)
    publish_postgres(pg_dsn, DAY, [lists(DAY, 3_000, 10, "old")], {"model": "old"})
    child = mp.get_context("spawn").Process(target=_publish_in_child, args=(pg_dsn, 60_000))
    child.start()
    deadline = time.monotonic() + 120
    # kill it while the COPY into its staging table is under way
    while not query(pg_dsn, "SELECT 1 FROM pg_stat_progress_copy WHERE tuples_processed > 0"):
        assert child.is_alive() and time.monotonic() < deadline, "the publish never started loading"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL
    assert _served(pg_dsn) == (30_000, 3_000, "old")  # yesterday's batch, whole
    assert len(_stages(pg_dsn)) == 1  # the killed attempt's staging table is left behind ...

    result = publish_postgres(pg_dsn, DAY, [lists(DAY, 2_000, 10, "new")], {"model": "new"})  # the retry
    assert result.rows == 20_000 and _served(pg_dsn) == (20_000, 2_000, "new")
    assert _stages(pg_dsn) == []  # ... and swept by the retry
    runs = query(pg_dsn, "SELECT status, rows_published FROM genrec.runs WHERE run_date = %s ORDER BY run_id", DAY)
    assert runs == [("published", 30_000), ("published", 20_000)]


def test_postgres_restart_during_a_publish_fails_loudly_and_the_retry_recovers():
    server = LocalPostgres().start()  # its own server: this test restarts it
    try:
        dsn = server.dsn
        upgrade(dsn)
        publish_postgres(dsn, DAY, [lists(DAY, 1_000, 10, "old")], {"model": "old"})

        def parts_with_a_restart() -> Iterator[pa.Table]:
            new = lists(DAY, 2_000, 10, "new")
            yield new.slice(0, 5_000)
            time.sleep(0.5)  # let the first part's COPY run, then restart the server under it
            server.restart()
            yield new.slice(5_000)

        with pytest.raises(psycopg2.Error):
            publish_postgres(dsn, DAY, parts_with_a_restart(), {"model": "new"}, workers=1)
        assert _served(dsn) == (10_000, 1_000, "old")
        result = publish_postgres(dsn, DAY, [lists(DAY, 2_000, 10, "new")], {"model": "new"})
        assert result.rows == 20_000 and _served(dsn) == (20_000, 2_000, "new") and _stages(dsn) == []
    finally:
        server.stop()


def _saved_model(tmp_path) -> str:
    from genrec_core.models.base import FitOptions
    from genrec_core.models.popularity.model import Popularity
    from tests.support import two_block_interactions

    uri = (tmp_path / "model").as_uri()
    Popularity().fit(two_block_interactions(), FitOptions()).save(uri, Storage())
    return uri


@pytest.mark.parametrize("damage", ["truncated", "garbage", "pickled_code", "bad_config"])
def test_a_damaged_model_artifact_fails_loudly_naming_it(tmp_path, damage):
    import io
    import pickle

    from genrec_core.errors import DataError

    uri = _saved_model(tmp_path)
    weights, config = tmp_path / "model" / "weights.pt", tmp_path / "model" / "config.json"
    marker = tmp_path / "pwned"

    class Payload:  # unpickling this would run code: it must never be unpickled
        def __reduce__(self):
            return (open, (str(marker), "w"))

    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage":
        weights.write_bytes(os.urandom(4096))
    elif damage == "pickled_code":
        buffer = io.BytesIO()
        import torch

        torch.save({"counts": Payload()}, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
        weights.write_bytes(buffer.getvalue())
    else:
        config.write_text("{not json")
    with pytest.raises(DataError, match="model artifact .*model"):
        load_model(uri, Storage())
    assert not marker.exists()
