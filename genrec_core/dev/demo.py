"""`make demo`: a sample log, one nightly DAG run through `airflow dags test`, results read back."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
from typing import Any

from genrec_core import layout
from genrec_core.dev.airflow_env import airflow_bin, airflow_env, migrate_metadata_db
from genrec_core.dev.generate import LogSpec, generate_logs
from genrec_core.dev.paths import state_dir
from genrec_core.dev.services.local_postgres import LocalPostgres
from genrec_core.errors import GenrecError
from genrec_core.publish.lake import LISTS, Lake
from genrec_core.storage import Storage, join


def _one(cur: Any) -> tuple[Any, ...]:
    row = cur.fetchone()
    if row is None:
        raise GenrecError("the demo's query returned no row")
    return tuple(row)


def _say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def run_demo(run_date: dt.date) -> dict[str, Any]:
    root = state_dir() / "demo"
    events, output = root / "events", root / "output"
    for path in (events, output, root / "postgres"):
        shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()
    counts = generate_logs(LogSpec(users=3000, items=800, days=14, end_date=run_date, seed=7), events.as_uri())
    _say(
        f"generated {counts['events']} events for {counts['users']} users x {counts['items']} items "
        f"over {counts['days']} days in {events}"
    )

    with LocalPostgres(base_dir=root / "postgres") as pg:
        _say(f"Postgres running at {pg.dsn}")
        env = airflow_env(
            state_dir() / "airflow",
            {
                "GENREC_EVENTS_URI": events.as_uri(),
                "GENREC_OUTPUT_URI": output.as_uri(),
                "GENREC_PG_DSN": pg.dsn,
                "GENREC_LOOKBACK_DAYS": "14",
            },
        )
        _say("migrating the Airflow metadata database")
        migrate_metadata_db(env)
        # A data-interval DAG run triggered at T processes the last complete day before T.
        run_after = (run_date + dt.timedelta(days=1)).isoformat()
        _say(f"airflow dags test genrec_nightly {run_after}  (processes the day that ended then: {run_date})")
        result = subprocess.run(
            [airflow_bin(), "dags", "test", "genrec_nightly", run_after], env=env, capture_output=True, text=True
        )
        log_file = root / "airflow-dags-test.log"
        log_file.write_text(result.stdout + result.stderr)
        if result.returncode != 0 or "state=success" not in (result.stdout + result.stderr).replace(" ", ""):
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
            raise GenrecError(f"the DAG run failed (exit {result.returncode}); full log in {log_file}\n{tail}")
        return _show_results(pg.dsn, run_date, output.as_uri(), time.perf_counter() - started, log_file)


def _print_selection(selection: dict[str, Any] | None) -> None:
    """The model selection of an `auto` run: each candidate's score on the validation day, the winner marked."""
    if not selection or not selection.get("candidates"):
        return
    print(f"Model selection ({selection['metric']} on {selection['validation_day']}):")
    for candidate in selection["candidates"]:
        mark = "  <- served" if candidate["name"] == selection["winner"] else ""
        score = f"{candidate['score']:.4f}" if candidate.get("score") is not None else candidate["status"]
        print(f"  {candidate['name']:<16} {score:>8}  {candidate.get('train_seconds') or 0:6.1f} s{mark}")


def _show_results(dsn: str, run_date: dt.date, output_uri: str, seconds: float, log_file: Any) -> dict[str, Any]:
    from genrec_core.publish.connection import connect

    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT max(run_date) FROM genrec.runs WHERE status = 'published'")
        published = _one(cur)[0]
        if published != run_date:
            raise GenrecError(f"expected run date {run_date} to be published, Postgres has {published}")
        cur.execute("SELECT count(*), count(DISTINCT user_id) FROM genrec.recommendations_latest")
        rows, users = _one(cur)
        cur.execute("SELECT user_id FROM genrec.recommendations_latest GROUP BY user_id ORDER BY user_id LIMIT 3")
        sample = [r[0] for r in cur.fetchall()]
        cur.execute(
            "SELECT user_id, rank, item_id, round(score::numeric, 3) FROM genrec.recommendations_latest "
            "WHERE user_id = ANY(%s) AND rank <= 5 ORDER BY user_id, rank",
            (sample,),
        )
        top = cur.fetchall()
        cur.execute("SELECT run_date, status, model, metrics FROM genrec.runs ORDER BY run_id DESC LIMIT 1")
        run = _one(cur)
    conn.close()
    print(f"\nTop recommendations read back from Postgres (genrec.recommendations_latest, run_date {run_date}):")
    for user in sample:
        items = ", ".join(f"{item} ({score})" for u, _, item, score in top if u == user)
        print(f"  {user}: {items}")
    storage = Storage()
    summary = storage.read_json(layout.summary_uri(output_uri, run_date))
    print(f"\n{rows} rows for {users} users ({summary['users']} in the window), model {run[2]}")
    _print_selection(summary.get("selection"))
    print(f"Held out day {run_date} (lists from the days before it):")
    for name, metrics in [(f"{run[2]} (served)", run[3]), *summary["baseline_metrics"].items()]:
        print(
            "  {:<24} ndcg@10 {:.4f}  recall@10 {:.4f}  coverage@10 {:.3f}".format(
                name, metrics["ndcg@10"], metrics["recall@10"], metrics["coverage@10"]
            )
        )
    order = ("extract", "train", "evaluate", "gate", "score", "publish_object_store", "publish_postgres")
    costs = summary.get("stages", {})
    stages = ", ".join(f"{name} {costs[name]['seconds']:.1f} s" for name in order if name in costs)
    print(f"Stages: {stages}")
    print("Files:")
    for name in ("tables/recommendations", "tables/publications", "tables/serving", "extract", "models", "runs"):
        print(f"  {join(output_uri, name)}")
    lake = Lake(storage, output_uri)
    print(
        f"  Delta table version {lake.table(LISTS).version()}; {run_date} published: "
        f"{run_date in lake.publications()}; serving {lake.serving_date()}"
    )
    print(f"  Airflow log: {log_file}\n")
    return {"run_date": run_date.isoformat(), "rows": rows, "users": users, "seconds": round(seconds, 1)}
