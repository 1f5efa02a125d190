"""Publishing under concurrency, retention, rollback/drop, the reader role and hostile input (real Postgres)."""

from __future__ import annotations

import datetime as dt
import json
import threading

import psycopg2
import pyarrow as pa
import pytest
from psycopg2 import sql

from genrec_core import cli
from genrec_core.errors import DataError
from genrec_core.publish.migrations import upgrade
from genrec_core.publish.postgres import drop_date, publish_postgres, read_user_recommendations, rollback_to
from tests.support import lists, query

pytestmark = pytest.mark.integration
DAYS = [dt.date(2026, 11, d) for d in (16, 17, 18, 19, 20)]


def served(dsn: str) -> dt.date | None:
    rows = query(dsn, "SELECT DISTINCT run_date FROM genrec.recommendations_latest")
    assert len(rows) <= 1
    return rows[0][0] if rows else None


def test_reader_polling_during_a_republish_never_sees_a_partial_batch(pg_dsn):
    upgrade(pg_dsn)
    day = DAYS[-1]
    publish_postgres(pg_dsn, day, [lists(day, 2000, 10, "old")], {"model": "old"})
    seen: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def reader() -> None:
        conn = psycopg2.connect(pg_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT count(*), min(model), max(model) FROM genrec.recommendations_latest")
                seen.append(cur.fetchone())
        conn.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        new_parts = (lists(day, 1500, 10, "new").slice(i * 3000, 3000) for i in range(5))
        publish_postgres(pg_dsn, day, new_parts, {"model": "new"})
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 5
    assert set(seen) <= {(20000, "old", "old"), (15000, "new", "new")}
    assert seen[-1] == (15000, "new", "new") or served(pg_dsn) == day


def test_two_dates_loading_at_once_do_not_interfere(pg_dsn):
    upgrade(pg_dsn)
    errors: list[BaseException] = []

    def publish(day: dt.date, users: int) -> None:
        try:
            parts = (lists(day, users, 10).slice(i * 2000, 2000) for i in range(users * 10 // 2000 + 1))
            publish_postgres(pg_dsn, day, parts, {"model": "m"})
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=publish, args=(DAYS[0], 3000)),
        threading.Thread(target=publish, args=(DAYS[1], 2500)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counts = query(pg_dsn, "SELECT run_date, count(*) FROM genrec.recommendations GROUP BY 1 ORDER BY 1")
    assert counts == [(DAYS[0], 30000), (DAYS[1], 25000)]
    assert served(pg_dsn) == DAYS[1]


def test_retention_keeps_the_newest_dates_and_the_served_one(pg_dsn):
    upgrade(pg_dsn)
    for day in DAYS[:3]:
        publish_postgres(pg_dsn, day, [lists(day, 3, 2)], {"model": "m"}, keep_dates=2)
    kept = [r[0] for r in query(pg_dsn, "SELECT DISTINCT run_date FROM genrec.recommendations ORDER BY 1")]
    assert kept == DAYS[1:3]

    rollback_to(pg_dsn, DAYS[1])  # serve the older kept date ...
    for day in DAYS[3:]:
        publish_postgres(pg_dsn, day, [lists(day, 3, 2)], {"model": "m"}, keep_dates=2)
    kept = [r[0] for r in query(pg_dsn, "SELECT DISTINCT run_date FROM genrec.recommendations ORDER BY 1")]
    # ... newer publishes move serving forward again; retention keeps the newest two
    assert served(pg_dsn) == DAYS[4] and kept == DAYS[3:]


def test_backfill_of_an_older_date_does_not_move_serving_back(pg_dsn):
    upgrade(pg_dsn)
    publish_postgres(pg_dsn, DAYS[2], [lists(DAYS[2], 3, 2)], {"model": "m"})
    publish_postgres(pg_dsn, DAYS[0], [lists(DAYS[0], 3, 2)], {"model": "m"})
    assert served(pg_dsn) == DAYS[2]
    by_date = query(pg_dsn, "SELECT run_date, count(*) FROM genrec.recommendations_by_date GROUP BY 1 ORDER BY 1")
    assert by_date == [(DAYS[0], 6), (DAYS[2], 6)]


def test_rollback_and_drop_are_recorded(pg_dsn):
    upgrade(pg_dsn)
    for day in DAYS[:3]:
        publish_postgres(pg_dsn, day, [lists(day, 3, 2, model=f"m{day.day}")], {"model": "m"})
    assert rollback_to(pg_dsn, DAYS[1], "bad lists on the 18th") == DAYS[2]
    assert served(pg_dsn) == DAYS[1]
    assert read_user_recommendations(pg_dsn, "u0")[0]["model"] == "m17"
    with pytest.raises(DataError, match="no published partition"):
        rollback_to(pg_dsn, dt.date(2026, 10, 1))

    assert drop_date(pg_dsn, DAYS[1]) == DAYS[2]  # dropping the served date serves the newest remaining
    assert served(pg_dsn) == DAYS[2]
    statuses = query(pg_dsn, "SELECT run_date, status FROM genrec.runs WHERE status <> 'published' ORDER BY run_id")
    assert statuses == [(DAYS[1], "rolled_back"), (DAYS[1], "dropped")]
    with pytest.raises(DataError, match="no published partition"):
        drop_date(pg_dsn, DAYS[1])


def test_cli_rollback_and_drop_move_postgres_and_the_object_store_together(pg_dsn, tmp_path, monkeypatch, capsys):
    from genrec_core.publish.lake import Lake
    from genrec_core.storage import Storage

    upgrade(pg_dsn)
    lake = Lake(Storage(), tmp_path.as_uri())
    for day in DAYS[:2]:
        publish_postgres(pg_dsn, day, [lists(day, 2, 2)], {"model": "m"})
        lake.publish(day, lambda day=day: iter([lists(day, 2, 2)]), {"model": "m"})
    monkeypatch.setenv("GENREC_PG_DSN", pg_dsn)
    monkeypatch.setenv("GENREC_OUTPUT_URI", tmp_path.as_uri())
    assert cli.main(["publish", "rollback", "--to", "2026-11-16"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "serving": "2026-11-16",
        "previously_serving": "2026-11-17",
        "previously_serving_in_tables": "2026-11-17",
    }
    assert lake.serving_date() == DAYS[0]
    assert cli.main(["publish", "drop", "2026-11-17", "--reason", "test"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "dropped": "2026-11-17",
        "serving": "2026-11-16",
        "serving_in_tables": "2026-11-16",
    }
    assert sorted(lake.publications()) == [DAYS[0]]
    assert cli.main(["publish", "drop", "2026-11-17"]) == 2
    assert "no published partition for 2026-11-17" in capsys.readouterr().err


def test_reader_role_reads_views_and_nothing_else(pg_dsn):
    upgrade(pg_dsn)
    publish_postgres(pg_dsn, DAYS[0], [lists(DAYS[0], 2, 2)], {"model": "m"})
    conn = psycopg2.connect(pg_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET ROLE genrec_reader")
        cur.execute("SELECT count(*) FROM genrec.recommendations_latest")
        assert cur.fetchone() == (4,)
        cur.execute("SELECT count(*) FROM genrec.recommendations_by_date")
        assert cur.fetchone() == (4,)
        for statement in (
            "SELECT * FROM genrec.recommendations",
            "SELECT * FROM genrec.recommendations_20261116",
            "SELECT * FROM genrec.runs",
            "SELECT * FROM genrec.serving",
            "DELETE FROM genrec.recommendations_latest",
            "INSERT INTO genrec.runs (run_date, status) VALUES ('2026-01-01', 'failed')",
            "UPDATE genrec.serving SET run_date = '2026-01-01'",
            "CREATE TABLE genrec.evil (x int)",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(statement)
    conn.close()


def test_hostile_values_round_trip_and_bind_safely(pg_dsn):
    upgrade(pg_dsn)
    hostile = [
        "o'brien",
        'say "hi"',
        "a,b",
        "line\nbreak",
        "back\\slash",
        "x' OR '1'='1",
        "🙂 ünïcödé",
        "'); DROP TABLE genrec.runs; --",
        "\\N",
    ]
    day = DAYS[0]
    table = pa.table(
        {
            "run_date": pa.array([day] * len(hostile), pa.date32()),
            "user_id": hostile,
            "rank": pa.array([1] * len(hostile), pa.int32()),
            "item_id": hostile,
            "score": [0.5] * len(hostile),
            "model": ["m"] * len(hostile),
            "source": ["model"] * len(hostile),
        }
    )
    publish_postgres(pg_dsn, day, [table], {"model": "m"})
    stored = query(pg_dsn, "SELECT user_id, item_id FROM genrec.recommendations ORDER BY user_id")
    assert sorted(stored) == sorted(zip(hostile, hostile))
    assert [r["item_id"] for r in read_user_recommendations(pg_dsn, "x' OR '1'='1")] == ["x' OR '1'='1"]
    assert read_user_recommendations(pg_dsn, "nobody' OR '1'='1") == []
    assert query(pg_dsn, "SELECT count(*) FROM genrec.runs") == [(1,)]


def test_identifiers_are_quoted_not_spliced(pg_dsn):
    upgrade(pg_dsn)
    evil = 'x"; DROP TABLE genrec.runs; --'
    conn = psycopg2.connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} (a int)").format(sql.Identifier("genrec", evil)))
    conn.close()
    assert query(pg_dsn, "SELECT to_regclass('genrec.runs') IS NOT NULL") == [(True,)]
    assert query(pg_dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'genrec' AND tablename = %s", evil) == [
        (1,)
    ]
