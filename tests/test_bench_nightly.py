"""`genrec bench nightly` on a tiny planted log (a smoke test: the figures belong in the bench's own runs),
and the planted generator's truth: its best lists really are the best by the planted probabilities."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

import genrec_core.dev.planted as planted
from genrec_core.dev.planted import PlantedSpec, plant, stable_top_k
from genrec_core.dev.planted_sequences import SequenceSpec, plant_sequences
from tests.support import FAST_VAE

pytestmark = pytest.mark.integration

SPEC = PlantedSpec(users=400, items=90, days=8, end_date=dt.date(2026, 11, 20), events=9000, seed=5)


def test_the_planted_truth_is_deterministic_and_its_oracle_is_the_best_list():
    log, again = plant(SPEC, extra_days=1), plant(SPEC, extra_days=1)
    day = SPEC.end_date + dt.timedelta(days=1)
    for d in log.days:
        assert log.days[d].equals(again.days[d])
    seen = log.interactions(SPEC.first_day, SPEC.end_date)
    users = np.flatnonzero(np.diff(seen.indptr) > 0)
    truth = log.oracle_top_k(users, seen, day, 10, knowing_users=True)
    posterior = log.oracle_top_k(users, seen, day, 10)
    popular = np.argsort(-np.asarray(seen.sum(axis=0)).ravel(), kind="stable")
    masked = [[i for i in popular if not seen[u, i]][:10] for u in users]
    mass = {
        name: log.captured_mass(users, lists, seen, day)
        for name, lists in [("truth", truth), ("posterior", posterior), ("popularity", np.array(masked))]
    }
    # by construction: the true ranking catches the most probability for every user, and knowing the topics
    # but not the user (the posterior) still beats a ranking that ignores the user
    assert (mass["truth"] >= mass["posterior"] - 1e-12).all() and (mass["truth"] >= mass["popularity"] - 1e-12).all()
    assert mass["posterior"].mean() > mass["popularity"].mean()
    expected = np.sort(log.unseen_probabilities(users, seen, day), axis=1)[:, ::-1][:, :10].sum(axis=1)
    np.testing.assert_allclose(mass["truth"], expected)
    assert not seen[users[:, None], truth].toarray().any()  # lists hold unseen items only


def test_stable_top_k_is_the_head_of_a_stable_sort():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4, size=(50, 30)).astype(np.float64)  # many ties, at the boundary too
    for k in (1, 5, 29, 30, 40):
        np.testing.assert_array_equal(stable_top_k(values, k), np.argsort(-values, axis=1, kind="stable")[:, :k])


def test_chunking_a_million_item_catalogue_changes_no_draw_or_list(monkeypatch):
    """Users are chunked by catalogue size (a float64 users x items block per chunk); the log and its best
    lists do not depend on the chunk."""
    assert planted.user_chunk(1_000_000) == 33 and planted.user_chunk(90) == 2048
    day = SPEC.end_date + dt.timedelta(days=1)
    log = plant(SPEC, extra_days=1)
    seen = log.interactions(SPEC.first_day, SPEC.end_date)
    users = np.arange(SPEC.users)
    lists = log.oracle_top_k(users, seen, day, 10)
    monkeypatch.setattr(planted, "user_chunk", lambda n_items, most=2048, budget_bytes=0: 7)
    small = plant(SPEC, extra_days=1)
    for d in log.pairs:
        np.testing.assert_array_equal(log.pairs[d][1], small.pairs[d][1])
    np.testing.assert_array_equal(small.oracle_top_k(users, seen, day, 10), lists)


def test_the_planted_chain_is_deterministic_and_its_oracle_is_the_best_next_item_list():
    spec = SequenceSpec(users=300, items=200, days=6, end_date=dt.date(2026, 11, 20), events=3000, seed=2)
    log, again = plant_sequences(spec, extra_days=1), plant_sequences(spec, extra_days=1)
    for d in log.days:
        assert log.days[d].equals(again.days[d])
    day = spec.end_date + dt.timedelta(days=1)
    seen = log.interactions(spec.first_day, spec.end_date)
    users = np.flatnonzero(np.diff(log.next_items(day).indptr) > 0)
    best = log.oracle_top_k(users, seen, day, 10)
    popular = np.argsort(-log.popularity, kind="stable")
    by_popularity = np.array([[i for i in popular if not seen[u, i]][:10] for u in users])
    best_mass = log.captured_mass(users, best, seen, day)
    assert (best_mass >= log.captured_mass(users, by_popularity, seen, day) - 1e-12).all()
    assert best_mass.mean() > 0.8  # the chain carries most of the signal (follow = 0.85)
    assert not seen[users[:, None], best].toarray().any()  # lists hold unseen items only
    # the generator's own draw: each user's next item, a sample from the same distribution, lands in the
    # best lists at about their captured mass
    hits = log.next_items(day)[users][np.arange(len(users))[:, None], best].toarray().any(axis=1)
    assert abs(hits.mean() - best_mass.mean()) < 0.1
    # a user's steps within a day carry rising times, in the order the chain took them
    table = log.days[spec.end_date].to_pandas().drop_duplicates()
    users_of_day, items_of_day = log.pairs[spec.end_date]
    for user in np.unique(users_of_day)[:20]:
        steps = table[table.user_id == f"u{user:07d}"].sort_values("event_ts").item_id.tolist()
        assert steps == [f"i{i:06d}" for i in items_of_day[users_of_day == user]]


def test_bench_nightly_runs_two_nights_of_the_production_path(tmp_path):
    from genrec_core.dev.benchmarks import nightly_bench

    settings = {
        "lookback_days": 8,
        "spark_master": "local[2]",
        "spark_driver_memory": "1g",
        "mult_vae": FAST_VAE,
        "selection": {"candidates": ["ease", "item_knn", "popularity", "mult_vae", "mult_vae+ease"], "patience": 3},
    }
    result = nightly_bench.run(400, 90, 9000, days=8, nights=2, k=5, seed=5, workdir=tmp_path, overrides=settings)
    first, second = result["nights"]
    assert (first["mode"], first["run_date"], first["judged_day"]) == ("retrain", "2026-11-20", "2026-11-21")
    assert first["selection"]["winner"] == first["served_model"]
    assert second["mode"] in ("finetune", "retrain") and "selected on 2026-11-20" in second["reason"]
    for night in (first, second):
        assert night["users_judged"] > 20 and night["gate"]["passed"]
        assert night["best"]["recall@5_ratio"] == 1.0 and night["best"]["captured_mass_ratio"] == 1.0
        assert night["true_tastes"]["captured_mass"] >= night["best"]["captured_mass"]
        assert night["published"]["recall@5"] > 0.0 and night["published"]["captured_mass_ratio"] > 0.5
        assert night["published"]["captured_mass"] > night["popularity"]["captured_mass"]
        assert {"extract", "train", "evaluate", "score", "publish_postgres"} <= set(night["stage_seconds"])
    assert result["log"]["events"] > 5000


def test_the_linear_reference_is_sansa_where_ease_is_refused():
    from genrec_core.config import load_settings
    from genrec_core.dev.benchmarks.nightly_bench import linear_reference

    settings = load_settings(ease={"max_items": 100})
    assert linear_reference(settings, 100) == "ease" and linear_reference(settings, 101) == "sansa"
