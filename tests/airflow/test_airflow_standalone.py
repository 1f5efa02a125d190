"""A real `airflow standalone`: a CLI backfill of three past dates runs beside the scheduler's own
nightly run, and the UI's Backfill dialog creates a backfill that publishes too.

Scheduler, dag-processor, api-server and LocalExecutor workers are Airflow's own; the metadata
database and the recommendation tables live on the session's real Postgres. The nightly run is
the one the scheduler creates when the DAG is unpaused (catchup off: the last complete day,
yesterday in UTC), so this test is the one place whose dates follow the wall clock.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from pathlib import Path

import pytest

from genrec_core.dev.generate import LogSpec, generate_logs
from genrec_core.dev.services.airflow_standalone import AirflowStandalone
from genrec_core.publish.object_store import published
from genrec_core.storage import Storage, join
from tests.support import FAST_VAE, assert_lists_are_complete_and_unseen, fetch, seen_pairs

pytestmark = pytest.mark.integration

DAG_ID = "genrec_nightly"
LOOKBACK = 6
SCREENSHOT = os.environ.get("BACKFILL_DIALOG_SCREENSHOT")  # where to save the dialog's picture, if anywhere


def _failed_tasks(af: AirflowStandalone) -> list[str]:
    """Task instances that failed or wait for a retry, with where their log is: in this test any is a bug."""
    tis = af.get(f"/api/v2/dags/{DAG_ID}/dagRuns/~/taskInstances?state=failed&state=up_for_retry&limit=100")
    return [
        f"{ti['dag_run_id']}/{ti['task_id']}[{ti['map_index']}] {ti['state']} (try {ti['try_number']}; "
        f"log under {af.home}/logs)"
        for ti in tis["task_instances"]
    ]


def _wait_for_runs(af: AirflowStandalone, count: int, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    runs: list[dict] = []
    while time.monotonic() < deadline:
        failed = _failed_tasks(af)  # fail at once rather than sit out the DAG's retry back-off
        assert not failed, f"tasks failed: {failed}"
        runs = af.dag_runs(DAG_ID)
        if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        time.sleep(5)
    raise AssertionError(f"DAG runs not finished in {timeout_s:.0f}s: {[(r['dag_run_id'], r['state']) for r in runs]}")


def _wait_until_backfills_complete(af: AirflowStandalone, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(b["completed_at"] is None for b in af.get(f"/api/v2/backfills?dag_id={DAG_ID}")["backfills"]):
        assert time.monotonic() < deadline, "a backfill whose runs have all finished is still not complete"
        time.sleep(2)


def _backfill_through_the_dialog(af: AirflowStandalone, day: dt.date) -> None:
    """Open the DAG's Trigger dialog, switch to Backfill, enter one logical date as the range and run it."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{af.url}/dags/{DAG_ID}", wait_until="networkidle")
            page.get_by_role("button", name="Trigger").first.click()
            page.get_by_text("Backfill", exact=True).click()
            for picker in range(2):  # From, To:  # each a popover with a date and a time field
                page.get_by_test_id("datetime-input").nth(picker).click()
                popover = page.locator("[data-scope=popover][data-part=content][data-state=open]")
                popover.get_by_placeholder("YYYY/MM/DD").fill(day.strftime("%Y/%m/%d"))
                popover.get_by_placeholder("HH:mm").fill("00:00")
                page.keyboard.press("Escape")
                expect(page.get_by_test_id("datetime-input").nth(picker)).to_contain_text(day.strftime("%b %-d, %Y"))
            page.get_by_text(re.compile(r"^1 runs? will be triggered")).wait_for(timeout=30_000)
            if SCREENSHOT:
                page.screenshot(path=SCREENSHOT)
            page.get_by_role("button", name="Run Backfill").click()
            deadline = time.monotonic() + 60
            while len(af.get(f"/api/v2/backfills?dag_id={DAG_ID}")["backfills"]) < 2:
                if time.monotonic() > deadline:
                    page.screenshot(path=str(af.home / "dialog-failure.png"))
                    raise AssertionError(f"the dialog created no backfill; it shows: {page.inner_text('body')[:3000]}")
                time.sleep(1)
        finally:
            browser.close()


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Chromium for the UI dialog")
def test_cli_and_ui_backfills_beside_the_nightly_run(postgres, pg_dsn, tmp_path):
    nightly = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    backfilled = [nightly - dt.timedelta(days=n) for n in (4, 3, 2)]
    from_ui = nightly - dt.timedelta(days=5)
    events, output = (tmp_path / "events").as_uri(), (tmp_path / "output").as_uri()
    generate_logs(LogSpec(users=300, items=120, days=12, end_date=nightly, seed=3), events)
    env = {
        "GENREC_EVENTS_URI": events,
        "GENREC_OUTPUT_URI": output,
        "AIRFLOW_CONN_GENREC_POSTGRES": pg_dsn,
        "GENREC_LOOKBACK_DAYS": str(LOOKBACK),
        "GENREC_SPARK_MASTER": "local[1]",
        "GENREC_SPARK_DRIVER_MEMORY": "1g",
        "GENREC_TORCH_THREADS": "1",
        # the champion is whichever date was published last before D: with runs side by side that depends on
        # timing, so the gate's margin is wide here (tests/evaluate/test_gate.py covers the gate's decisions)
        "GENREC_GATE__MARGIN": "0.5",
        # a named model: this test is about backfills beside the scheduler (dag.test covers the default, auto)
        "GENREC_MODEL": "mult_vae",
        **{f"GENREC_MULT_VAE__{k.upper()}": str(v) for k, v in FAST_VAE.items()},
    }
    with AirflowStandalone(tmp_path / "airflow", postgres, env) as af:
        af.wait_for_dag(DAG_ID)
        af.cli("dags", "unpause", DAG_ID)  # the scheduler now creates the nightly run for yesterday
        af.cli(
            "backfill",
            "create",
            "--dag-id",
            DAG_ID,
            "--from-date",
            backfilled[0].isoformat(),
            "--to-date",
            backfilled[-1].isoformat(),
            "--max-active-runs",
            "1",
        )
        _wait_for_runs(af, 4, timeout_s=1500)
        _wait_until_backfills_complete(af, timeout_s=120)  # the scheduler marks it a moment after its last run
        # Airflow runs one backfill per DAG at a time: the dialog's comes after the CLI's has finished
        _backfill_through_the_dialog(af, from_ui)
        runs = _wait_for_runs(af, 5, timeout_s=600)
        backfills = af.get(f"/api/v2/backfills?dag_id={DAG_ID}")["backfills"]

    assert sorted((b["from_date"][:10], b["to_date"][:10]) for b in backfills) == sorted(
        [(backfilled[0].isoformat(), backfilled[-1].isoformat()), (from_ui.isoformat(), from_ui.isoformat())]
    )
    by_date = {r["data_interval_start"][:10]: r for r in runs}
    assert set(by_date) == {d.isoformat() for d in [from_ui, *backfilled, nightly]}, by_date.keys()
    assert {d: r["state"] for d, r in by_date.items()} == dict.fromkeys(by_date, "success")
    assert by_date[nightly.isoformat()]["run_type"] == "scheduled"
    assert {by_date[d.isoformat()]["run_type"] for d in [from_ui, *backfilled]} == {"backfill"}

    storage = Storage()
    for day in [from_ui, *backfilled, nightly]:  # each date complete in its own partition, nothing mixed
        recs = fetch(pg_dsn, "SELECT * FROM genrec.recommendations_by_date WHERE run_date = %s", day)
        summary = storage.read_json(join(output, "runs", f"dt={day}", "summary.json"))
        assert summary["rows_published"] == len(recs) > 0
        assert_lists_are_complete_and_unseen(recs, seen_pairs(storage, events, day, LOOKBACK), 10)
        assert published(storage, output)[day]["rows"] == len(recs)
    # backfills of older dates never move serving back: the nightly date is served
    latest = fetch(pg_dsn, "SELECT DISTINCT run_date FROM genrec.recommendations_latest")
    assert latest.run_date.tolist() == [nightly]
    recorded = fetch(pg_dsn, "SELECT run_date, status FROM genrec.runs WHERE status = 'published'")
    assert sorted(recorded.run_date) == sorted([from_ui, *backfilled, nightly])
    print(json.dumps({d: r["run_type"] for d, r in sorted(by_date.items())}))
