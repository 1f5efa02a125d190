"""`genrec bench nightly`: the production path on a log whose best achievable ranking is known.

A planted log (genrec_core/dev/planted.py) is written one day at a time, so a night never has
a later day on disk. Each night runs the real nightly path in this process with the default
settings (`run_nightly`: Spark extract, train or select, evaluate, gate, score, publish to an
embedded Postgres); only `k` and the paths are set. The lists it published are then read back
from Postgres and judged on the *next* day, the day they are served for, against:

- `published`: the lists the night published, read back from Postgres;
- `best`: the best achievable lists: unseen items ranked by the planted model with each user's
  tastes inferred from their history in the window (the posterior mean; the topics known);
- `true_tastes`: the same with each user's true tastes, a bound no model reaches from a finite history;
- `ease` (`sansa` above `ease.max_items`) and `popularity`: fitted in-process on the extract the night made,
  with its settings.

`--log sequences` plants a first-order chain over items instead (genrec_core/dev/planted_sequences.py): a
user's next item depends on the latest one, so only a model of order can reach `best`. There the judged
target is each user's *next* item (their first on the judged day), `true_tastes` does not exist (the chain
is known exactly), and the references add `transitions`.

Every ratio is to `best`. `captured_mass` is the expected share of a user's next new item that
the list catches, computed from the planted probabilities, so it carries no sampling noise of
the judged day. The first night is a full retrain (a selection with `model = "auto"`); the
nights after it fine-tune or refit the winner, as they would in production.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec_core.dev.planted import PlantedLog, PlantedSpec, plant, write_day
from genrec_core.dev.planted_sequences import SequenceLog, SequenceSpec, plant_sequences

END_DATE = dt.date(2026, 11, 20)
LOGS = ("topics", "sequences")


def run(
    users: int,
    items: int,
    events: int,
    days: int = 30,
    nights: int = 2,
    k: int = 20,
    seed: int = 0,
    workdir: Path | None = None,
    overrides: dict[str, Any] | None = None,
    log: str = "topics",
) -> dict[str, Any]:
    """Plant a log (`log`: topics or sequences) of `days` days ending on END_DATE, run `nights` nightly runs
    from END_DATE on, judge each."""
    from genrec_core.dev.services.local_postgres import LocalPostgres

    if log not in LOGS:
        raise ValueError(f"unknown planted log {log!r}; expected one of {LOGS}")
    started = time.perf_counter()
    truth: PlantedLog | SequenceLog
    if log == "sequences":
        truth = plant_sequences(
            SequenceSpec(users=users, items=items, days=days, end_date=END_DATE, events=events, seed=seed), nights
        )
    else:
        truth = plant(
            PlantedSpec(users=users, items=items, days=days, end_date=END_DATE, events=events, seed=seed), nights
        )
    planted_seconds = time.perf_counter() - started
    root = Path(workdir or tempfile.mkdtemp(prefix="genrec-bench-nightly-"))
    for leftover in ("events", "output", "checkpoints"):  # a resumed checkpoint would skew the timings
        shutil.rmtree(root / leftover, ignore_errors=True)
    for day in sorted(d for d in truth.days if d <= END_DATE):
        write_day(truth, day, (root / "events").as_uri())
    results = []
    with LocalPostgres() as server:  # a fresh embedded server, removed afterwards
        for night in range(nights):
            run_date = END_DATE + dt.timedelta(days=night)
            if night:
                write_day(truth, run_date, (root / "events").as_uri())
            results.append(_night(truth, run_date, root, server.dsn, k, overrides or {}))
    return {
        "log": {
            "users": users,
            "items": items,
            "days": days,
            "events": int(sum(len(p[0]) for day, p in truth.pairs.items() if day <= END_DATE)),
            "seed": seed,
            "generator": "genrec_core/dev/planted_sequences.py (first-order chain)"
            if log == "sequences"
            else "genrec_core/dev/planted.py (topic mixture)",
            "plant_seconds": round(planted_seconds, 1),
        },
        "k": k,
        "settings": overrides or "defaults",
        "nights": results,
    }


def _night(
    truth: PlantedLog | SequenceLog, run_date: dt.date, root: Path, dsn: str, k: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    from pydantic import SecretStr

    from genrec_core.config import load_settings
    from genrec_core.pipeline import run_nightly

    extra = dict(overrides)
    settings = load_settings(
        events_uri=(root / "events").as_uri(),
        output_uri=(root / "output").as_uri(),
        k=k,
        train={"checkpoint_dir": str(root / "checkpoints"), **extra.pop("train", {})},
        **extra,
    )
    settings = settings.model_copy(update={"pg_dsn": SecretStr(dsn)})
    started = time.perf_counter()
    summary = run_nightly(settings, run_date)
    wall = time.perf_counter() - started
    judged = _judge(truth, settings, run_date, dsn, k)
    return {
        "run_date": run_date.isoformat(),
        "mode": summary["training"]["mode"],
        "reason": summary["training"]["reason"],
        "served_model": summary["model"],
        "selection": summary.get("selection"),
        "wall_seconds": round(wall, 1),
        "stage_seconds": {name: cost["seconds"] for name, cost in summary["stages"].items()},
        "stage_peak_rss_mb": {name: cost["peak_rss_mb"] for name, cost in summary["stages"].items()},
        "gate": {key: summary["gate"][key] for key in ("passed", "challenger", "baseline", "baseline_value")},
        **judged,
    }


def _judge(truth: PlantedLog | SequenceLog, settings: Any, run_date: dt.date, dsn: str, k: int) -> dict[str, Any]:
    """Recall/NDCG@k on the next day (its first item, on a sequence log) of the published lists, the best
    achievable lists and the references."""
    from genrec_core import layout
    from genrec_core.data.interactions import ExtractedData
    from genrec_core.ranking.metrics import evaluation_targets, metrics_for_lists
    from genrec_core.storage import Storage

    window_start = run_date - dt.timedelta(days=settings.lookback_days - 1)
    seen = truth.interactions(max(window_start, truth.spec.first_day), run_date)
    judged_day = run_date + dt.timedelta(days=1)
    sequences = isinstance(truth, SequenceLog)
    judged = (
        truth.next_items(judged_day) if isinstance(truth, SequenceLog) else truth.interactions(judged_day, judged_day)
    )
    targets = evaluation_targets(seen, judged)
    served = _published_lists(dsn, run_date, truth.spec.users, truth.spec.items, k)
    has_list = served[:, 0] >= 0
    users = np.flatnonzero((np.diff(targets.indptr) > 0) & has_list)
    relevant = targets[users]
    lists = {"published": served[users], "best": truth.oracle_top_k(users, seen, judged_day, k)}
    if isinstance(truth, PlantedLog):
        lists["true_tastes"] = truth.oracle_top_k(users, seen, judged_day, k, knowing_users=True)
    data = ExtractedData(layout.extract_uri(settings.output_uri, run_date), run_date, Storage())
    linear = linear_reference(settings, len(data.items().ids))
    references = (linear, "popularity", "transitions") if sequences else (linear, "popularity")
    lists.update(_references(data, settings, users, k, references))
    out: dict[str, Any] = {
        "judged_day": judged_day.isoformat(),
        "target": "each user's next item" if sequences else "every new item of the day",
        "users_judged": len(users),
    }
    raw: dict[str, dict[str, float]] = {}
    for name, top in lists.items():
        per_user = metrics_for_lists(top, relevant, k)
        raw[name] = {
            f"recall@{k}": float(per_user["recall"].mean()),
            f"ndcg@{k}": float(per_user["ndcg"].mean()),
            "captured_mass": float(truth.captured_mass(users, top, seen, judged_day).mean()),
        }
    for name, row in raw.items():
        out[name] = {key: round(value, 4) for key, value in row.items()}
        out[name].update(
            {f"{key}_ratio": round(value / raw["best"][key], 4) for key, value in row.items() if raw["best"][key] > 0}
        )
    return out


def _published_lists(dsn: str, run_date: dt.date, n_users: int, n_items: int, k: int) -> np.ndarray:
    """The lists published for `run_date`, read back from Postgres, as generator indices [users, k] (-1: none)."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT user_id, rank, item_id FROM genrec.recommendations WHERE run_date = %s", (run_date,))
            rows = cur.fetchall()
    finally:
        conn.close()
    out = np.full((n_users, k), -1, dtype=np.int64)
    for user_id, rank, item_id in rows:
        out[int(user_id[1:]), rank - 1] = int(item_id[1:])
    return out


def linear_reference(settings: Any, n_items: int) -> str:
    """EASE, or SANSA where EASE's items x items matrix is refused (`ease.max_items`)."""
    from genrec_core.models.registry import model_spec

    return "ease" if model_spec("ease").too_many_items(settings.model_section("ease"), n_items) is None else "sansa"


def _references(data: Any, settings: Any, users: np.ndarray, k: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The `names` models' lists for `users` (generator indices), fitted on the night's extract as the
    pipeline would (days before D), scored with the window's history through D, seen items masked."""
    from genrec_core.models.base import FitOptions
    from genrec_core.models.registry import build_model
    from genrec_core.ranking.topk import chunk_rows, iter_top_k

    train, _, full = data.split()
    extract_users = data.vocabularies()[0].ids
    row_of = {int(uid[1:]): row for row, uid in enumerate(extract_users)}
    item_index = np.array([int(iid[1:]) for iid in data.items().ids])
    rows = np.array([row_of[u] for u in users])
    out = {}
    for name in names:
        model = build_model(name, settings.model_section(name)).fit(train, FitOptions(seed=settings.seed))
        top = np.full((len(users), k), -1, dtype=np.int64)
        position = {row: i for i, row in enumerate(rows)}
        history = sp.csr_matrix(model.history_of(full))
        for chunk in iter_top_k(model, history, rows, k, chunk_rows(history.shape[1])):
            picked = np.where(chunk.items >= 0, item_index[np.maximum(chunk.items, 0)], -1)
            top[[position[r] for r in chunk.users]] = picked
        out[name] = top
    return out
