"""The stages' hand-offs survive XCom (plain JSON) unchanged, and the run record is built in one place."""

from __future__ import annotations

import datetime as dt
import json

from genrec_core.handoffs import (
    Champion,
    Evaluated,
    Extracted,
    GateDecision,
    PublishedObjects,
    PublishedPostgres,
    RunRecord,
    Scored,
    StageCost,
    Trained,
)

DAY = dt.date(2026, 11, 20)
STATS = {"events_read": 10, "events_rejected": 1, "rejected_by_reason": {"bad_id": 1}, "users": 3, "items": 4}
EXTRACTED = Extracted("file:///o/extract/dt=2026-11-20", STATS, cost=StageCost(20.5, 210.0, 1500.0))
TRAINED = Trained(
    "file:///o/models/mult_vae/dt=2026-11-20", "mult_vae", "finetune", "warm start", 1.5, None, cost=StageCost(9, 800)
)
EVALUATED = Evaluated(
    {"ndcg@10": 0.3, "users_evaluated": 3},
    {"ndcg@10": 0.1},
    Champion("mult_vae@2026-11-19", {"ndcg@10": 0.29}),
    baselines={"ease": {"ndcg@10": 0.28}, "item_knn": {"ndcg@10": 0.25}},
)
SELECTION = {
    "winner": "rec_vae+ease",
    "metric": "ndcg@10",
    "validation_day": "2026-11-19",
    "candidates": [{"name": "ease", "status": "ok", "score": 0.3, "train_seconds": 1.0}],
}
DECISION = GateDecision(True, False, [], "ndcg@10", 0.3, 0.29, "mult_vae@2026-11-19", 0.1, {"ndcg@10": 0.29})
SCORED = Scored("file:///o/scored/dt=2026-11-20", 3, 2, 1, 30, 2, "local", 0.5)


def _through_xcom(value):
    return type(value).from_xcom(json.loads(json.dumps(value.to_xcom())))


def test_every_handoff_round_trips_through_json():
    objects = PublishedObjects("file:///o/tables/recommendations", 30, 4, [])
    postgres = PublishedPostgres(30, {"copy_s": 0.1}, ["2026-10-01"])
    for value in (EXTRACTED, TRAINED, EVALUATED, DECISION, SCORED, objects, postgres):
        assert _through_xcom(value) == value
    record = RunRecord.start(DAY, EXTRACTED, TRAINED, EVALUATED, "t0").but(
        decision=DECISION, scored=SCORED, objects=objects, postgres=postgres
    )
    assert _through_xcom(record) == record
    assert isinstance(_through_xcom(record).evaluated.champion, Champion)


def test_the_run_record_feeds_postgres_and_the_summary():
    record = RunRecord.start(DAY, EXTRACTED, TRAINED, EVALUATED)
    assert record.for_postgres()["metrics"] == EVALUATED.model  # before the gate: no decision yet
    done = record.but(decision=DECISION, scored=SCORED, postgres=PublishedPostgres(30))
    row = done.for_postgres()
    assert row["model_version"] == "mult_vae@2026-11-20" == TRAINED.version
    assert row["metrics"]["gate"]["champion_version"] == "mult_vae@2026-11-19"
    assert row["artifacts"] == {
        "extract": EXTRACTED.extract_uri,
        "model": TRAINED.model_uri,
        "scored": SCORED.scored_uri,
    }
    summary = done.summary()
    assert (summary["rows_published"], summary["events_read"], summary["gate"]["passed"]) == (30, 10, True)
    assert summary["training"] == {"mode": "finetune", "reason": "warm start", "fit_seconds": 1.5}
    assert summary["baseline_metrics"] == {"popularity": {"ndcg@10": 0.1}, **EVALUATED.baselines}
    assert summary["selection"] is None and row["selection"] is None


def test_stage_costs_and_the_selection_reach_postgres_and_the_summary():
    selected = Trained(
        "file:///o/models/auto/dt=2026-11-20",
        "rec_vae+ease",
        "retrain",
        "no model for 2026-11-19",
        30.0,
        selection=SELECTION,
        selected_on="2026-11-20",
        cost=StageCost(31.0, 900.0),
    )
    shards = [
        Scored(SCORED.scored_uri, 3, 2, 1, 30, 2, cost=StageCost(2.0, 500.0)),
        Scored(SCORED.scored_uri, 3, 3, 0, 30, 2, cost=StageCost(3.0, 400.0)),
    ]
    record = RunRecord.start(DAY, EXTRACTED, selected, EVALUATED).but(scored=Scored.combine(shards))
    assert record.stages() == {
        "extract": {"seconds": 20.5, "peak_rss_mb": 210.0, "children_peak_rss_mb": 1500.0},
        "train": {"seconds": 31.0, "peak_rss_mb": 900.0, "children_peak_rss_mb": 0.0},
        "score": {"seconds": 3.0, "peak_rss_mb": 500.0, "children_peak_rss_mb": 0.0},  # the worst shard
    }
    row, summary = record.for_postgres(), record.summary()
    assert row["model_version"] == "rec_vae+ease@2026-11-20"
    assert row["selection"] == SELECTION == summary["selection"] and row["stages"] == summary["stages"]
    assert _through_xcom(record) == record
    fine_tuned = Trained.from_xcom({**TRAINED.to_xcom(), "selected_on": "2026-11-18"})
    carried = RunRecord.start(DAY, EXTRACTED, fine_tuned, EVALUATED)
    assert carried.selection() == {"winner": "mult_vae", "selected_on": "2026-11-18"}


def test_shards_combine_into_one_total():
    other = Scored(SCORED.scored_uri, 4, 4, 0, 40, 2, "local", 0.7)
    total = Scored.combine([SCORED, other])
    assert (total.users, total.model_users, total.fallback_users, total.rows, total.seconds) == (7, 6, 1, 70, 0.7)
