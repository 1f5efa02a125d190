"""The genrec UI page: rendered from genrec.runs, checked in headless Chromium, registered with Airflow."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest

from genrec_airflow.ui import last_selection, render_page, series, served, svg_served


def _runs() -> list[dict]:
    runs = []
    for i in range(5):
        day = dt.date(2026, 11, 16) + dt.timedelta(days=i)
        runs.append(
            {
                "run_date": day,
                "status": "published",
                "model": "mult_vae",
                "model_version": f"mult_vae@{day}",
                "metrics": {"ndcg@10": 0.20 + i / 100, "recall@10": 0.3, "coverage@10": 0.5, "gate": {"passed": True}},
                "rows_published": 3000,
                "detail": None,
            }
        )
        runs.append(
            {
                "run_date": day,
                "status": "published",
                "model": "ease",
                "model_version": f"ease@{day}",
                "metrics": {"ndcg@10": 0.25, "recall@10": 0.33, "coverage@10": 0.4},
                "rows_published": 3000,
                "detail": None,
            }
        )
    runs.append(
        {
            "run_date": dt.date(2026, 11, 21),
            "status": "rejected",
            "model": "popularity",
            "model_version": "popularity@2026-11-21",
            "metrics": {"ndcg@10": 0.1, "gate": {"passed": False}},
            "rows_published": None,
            "detail": "quality gate: does not beat popularity",
        }
    )
    return runs


SELECTION = {
    "winner": "rec_vae+ease",
    "metric": "ndcg@10",
    "validation_day": "2026-11-18",
    "candidates": [
        {"name": "ease", "status": "ok", "score": 0.25, "train_seconds": 1.2, "best_epoch": None, "detail": ""},
        {"name": "rec_vae+ease", "status": "ok", "score": 0.27, "train_seconds": 80.0, "best_epoch": 12, "detail": ""},
        {"name": "cfgan", "status": "out_of_budget", "score": None, "train_seconds": 600.0, "detail": "budget"},
    ],
}


def _served_runs() -> list[dict]:
    """Four published nights of an auto line: ease served twice, then the selection of the 19th picks rec_vae+ease."""
    runs = []
    for i, model in enumerate(["ease", "ease", "rec_vae+ease", "rec_vae+ease"]):
        day = dt.date(2026, 11, 17) + dt.timedelta(days=i)
        runs.append(
            {
                "run_date": day,
                "status": "published",
                "model": model,
                "model_version": f"{model}@{day}",
                "metrics": {"ndcg@10": 0.25 + i / 100},
                "rows_published": 3000,
                "detail": None,
                "selection": SELECTION if i == 2 else {"winner": model, "selected_on": "2026-11-17"},
            }
        )
    return runs


def test_the_served_model_plot_marks_where_the_model_changed():
    runs = _served_runs()
    assert [m for _, m, _ in served(runs, "ndcg")] == ["ease", "ease", "rec_vae+ease", "rec_vae+ease"]
    plot = svg_served(runs)
    assert plot.count('class="change"') == 2  # the first model, then the switch on the 19th
    assert 'data-model="rec_vae+ease"' in plot and plot.count("<circle") == 4


def test_the_last_selection_is_a_table_with_the_winner_marked():
    runs = _served_runs()
    day, selection = last_selection(runs)
    assert day == dt.date(2026, 11, 19) and selection["winner"] == "rec_vae+ease"
    page = render_page(runs)
    assert '<table id="selection">' in page and page.count('<tr class="winner">') == 1
    winner_row = page.split('<tr class="winner">')[1].split("</tr>")[0]
    assert "rec_vae+ease" in winner_row and "0.2700" in winner_row and "12" in winner_row
    assert "out_of_budget" in page
    assert "No model selection recorded yet" in render_page(_runs())


def test_series_keep_published_runs_per_model_by_date():
    lines = series(_runs(), "ndcg")
    assert set(lines) == {"ease", "mult_vae"}  # the rejected run is not a point
    assert [round(v, 2) for _, v in lines["mult_vae"]] == [0.20, 0.21, 0.22, 0.23, 0.24]


def test_page_has_a_plot_per_metric_and_the_runs():
    page = render_page(_runs())
    assert page.count('<svg class="plot"') == 3 and page.count('class="series"') == 6
    assert "does not beat popularity" in page and "<td>rejected</td>" in page


def _free_port() -> int:
    from genrec_core.dev.services.local_postgres import free_port

    return free_port()


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (make system-deps installs it)")
def test_page_renders_in_headless_chromium(pg_dsn, monkeypatch, tmp_path):
    import psycopg2
    import uvicorn

    from genrec_airflow.ui import create_app
    from genrec_core.publish.migrations import upgrade

    upgrade(pg_dsn)
    conn = psycopg2.connect(pg_dsn)
    with conn, conn.cursor() as cur:
        for run in _runs() + _served_runs():
            cur.execute(
                "INSERT INTO genrec.runs (run_date, status, model, model_version, metrics, rows_published, "
                "detail, selection) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    run["run_date"],
                    run["status"],
                    run["model"],
                    run["model_version"],
                    json.dumps(run["metrics"]),
                    run["rows_published"],
                    run["detail"],
                    json.dumps(run["selection"]) if run.get("selection") else None,
                ),
            )
    conn.close()
    monkeypatch.setenv("GENREC_PG_DSN", pg_dsn)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        shot = tmp_path / "genrec-page.png"
        chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p'}"]
        dom = subprocess.run(
            [*chromium, "--dump-dom", f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=120
        ).stdout
        subprocess.run(
            [*chromium, f"--screenshot={shot}", "--window-size=800,1100", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            timeout=120,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert dom.count('class="series"') == 7 and 'data-model="mult_vae"' in dom
    assert "does not beat popularity" in dom
    assert '<tr class="winner">' in dom and 'class="change"' in dom
    assert shot.exists() and shot.stat().st_size > 5_000


@pytest.mark.integration
def test_airflow_loads_the_plugin(airflow_db):
    from genrec_core.dev.airflow_env import airflow_bin, airflow_env

    env = airflow_env(airflow_db)
    out = subprocess.run(
        [airflow_bin(), "plugins", "--output", "json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    plugins = json.loads(out.stdout[out.stdout.index("[") :])
    genrec = next(p for p in plugins if p["name"] == "genrec")
    assert "genrec" in json.dumps(genrec.get("fastapi_apps")) and "nav" in json.dumps(genrec.get("external_views"))
