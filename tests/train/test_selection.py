"""Choosing the served model: every candidate judged on the same validation day, failures and the budget
recorded and skipped, determinism, the catalogue limit and the recipe the winner is trained with."""

from __future__ import annotations

import logging

import pytest

from genrec_core.errors import ConfigError, TrainingError
from genrec_core.models.base import FitOptions, Validation
from genrec_core.models.registry import build_model, variant
from genrec_core.ranking.metrics import evaluate
from genrec_core.train.selection import FAILED, NOT_STARTED, OK, OUT_OF_BUDGET, candidates, select, unjudged
from tests.support import FAST_VAE, make_settings, planted_days

OPTIONS = FitOptions(seed=7, threads=2)
DAY = "2026-11-20"


def _settings(tmp_path, **selection):
    return make_settings("file:///nonexistent", (tmp_path / "out").as_uri(), model="auto", selection=selection, k=10)


@pytest.fixture(scope="module")
def days():
    return planted_days()


def test_every_candidate_is_recorded_and_the_best_wins(tmp_path, days):
    fit, validation = days
    settings = _settings(tmp_path, candidates=["popularity", "item_knn", "ease"])
    result = select(settings, fit, validation, DAY, OPTIONS)
    assert [o.name for o in result.candidates] == ["ease", "item_knn", "popularity"]  # registry order
    assert all(o.status == OK for o in result.candidates)
    for outcome in result.candidates:  # each score is the model's ndcg@10 on the validation day, fitted on `fit`
        model = build_model(outcome.name, settings.model_section(outcome.name)).fit(fit, OPTIONS)
        assert outcome.score == evaluate(model, fit.matrix, validation.matrix, 10)["ndcg@10"]
    best = max(result.candidates, key=lambda o: o.score)
    assert result.winner == best.name and result.metric == "ndcg@10" and result.validation_day == DAY
    assert result.to_json()["candidates"][0]["name"] == "ease"
    assert result.summary()["winner"] == result.winner


def test_a_model_and_its_expert_variant_share_one_network(tmp_path, days):
    fit, validation = days
    settings = _settings(tmp_path, candidates=["mult_vae", "mult_vae+ease"], patience=3)
    result = select(settings, fit, validation, DAY, OPTIONS)
    plain, expert = result.candidates
    assert (plain.name, expert.name) == ("mult_vae", "mult_vae+ease")
    assert plain.train_seconds == expert.train_seconds and plain.best_epoch == expert.best_epoch
    # the plain variant scores exactly as a Mult-VAE fitted on its own with the same seed and validation
    alone_config = variant("mult_vae", settings.model_section("mult_vae"))[1].model_copy(update={"epochs": 200})
    alone = build_model("mult_vae", alone_config)  # the selection's cap: selection.max_epochs
    checks = Validation(fit.matrix, validation.matrix, 10, patience=3, patience_updates=100)
    alone.fit(fit, FitOptions(seed=7, threads=2, validation=checks))
    assert plain.score == evaluate(alone, fit.matrix, validation.matrix, 10)["ndcg@10"]
    # the recipe fixes what validation chose: the epoch count, and the expert's L2 and weight
    assert plain.config["epochs"] == plain.best_epoch and plain.config["linear_expert"] is False
    assert expert.config["linear_expert"] is True
    assert expert.config["expert_l2"] is not None and expert.config["expert_weight"] is not None


def test_a_failing_candidate_is_recorded_and_skipped(tmp_path, days, monkeypatch, caplog):
    from genrec_core.models.item_knn.model import ItemKNN

    def broken(self, train, options):
        raise RuntimeError("neighbour table exploded")

    monkeypatch.setattr(ItemKNN, "_fit", broken)
    fit, validation = days
    with caplog.at_level(logging.INFO, logger="genrec_core.train.selection"):
        result = select(_settings(tmp_path, candidates=["item_knn", "popularity"]), fit, validation, DAY, OPTIONS)
    failed = result.candidates[0]
    assert (failed.name, failed.status, failed.score) == ("item_knn", FAILED, None)
    assert "neighbour table exploded" in failed.detail
    assert result.winner == "popularity"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("selection: ")]
    assert any("item_knn" in line and "failed" in line for line in lines)
    assert any("popularity" in line and "ndcg@10" in line for line in lines)  # one line per candidate


def test_when_every_candidate_fails_the_selection_fails_naming_each(tmp_path, days, monkeypatch):
    from genrec_core.models.item_knn.model import ItemKNN
    from genrec_core.models.popularity.model import Popularity

    for cls in (ItemKNN, Popularity):
        monkeypatch.setattr(cls, "_fit", lambda self, train, options: 1 / 0)
    fit, validation = days
    with pytest.raises(TrainingError, match=r"item_knn: failed ZeroDivisionError.*popularity: failed"):
        select(_settings(tmp_path, candidates=["item_knn", "popularity"]), fit, validation, DAY, OPTIONS)


def test_a_candidate_still_training_when_the_budget_ends_is_skipped(tmp_path, days):
    fit, validation = days
    slow = {**FAST_VAE, "hidden_dim": 256}
    settings = make_settings(
        "file:///nonexistent",
        (tmp_path / "out").as_uri(),
        model="auto",
        mult_vae=slow,
        selection={  # 100,000 epochs would take hours: the 1.2 s budget ends it
            "candidates": ["popularity", "mult_vae", "rec_vae"],
            "budget_minutes": 0.02,
            "patience": 100_000,
            "max_epochs": 100_000,
        },
    )
    result = select(settings, fit, validation, DAY, OPTIONS)
    status = {o.name: o.status for o in result.candidates}
    assert status == {"popularity": OK, "mult_vae": OUT_OF_BUDGET, "rec_vae": NOT_STARTED}
    assert result.winner == "popularity"
    assert "budget" in result.candidates[1].detail and "budget" in result.candidates[2].detail


def test_the_same_data_settings_and_seed_pick_the_same_winner(tmp_path, days):
    fit, validation = days
    settings = _settings(tmp_path, candidates=["popularity", "ease", "mult_vae", "mult_vae+ease"], patience=3)

    def outcome() -> list:
        result = select(settings, fit, validation, DAY, OPTIONS)
        return [result.winner] + [(o.name, o.status, o.score, o.best_epoch, o.config) for o in result.candidates]

    assert outcome() == outcome()


def test_candidates_over_their_item_limit_are_left_out_naming_the_setting(tmp_path):
    settings = make_settings(
        "file:///nonexistent",
        (tmp_path / "out").as_uri(),
        model="auto",
        ease={"max_items": 50},
        mult_vae={**FAST_VAE, "expert_max_items": 60},
    )
    pool, skipped = candidates(settings, n_items=80)
    assert skipped == {"ease": "80 items exceed ease.max_items=50 (an items x items matrix)"}
    # SANSA, EASE's weights as sparse factors, has no item limit: above ease.max_items it is the linear candidate,
    # and above expert_max_items it is a generative model's expert, so mult_vae+ease stays
    names = ["sansa", "item_knn", "transitions", "popularity", "mult_vae", "rec_vae", "sasrec", "mult_vae+ease"]
    names += ["rec_vae+ease"]
    assert [c.name for c in pool] == names
    assert [c.name for c in candidates(settings, n_items=50)[0]][:5] == [
        "ease",
        "sansa",
        "item_knn",
        "transitions",
        "popularity",
    ]


def test_sequential_candidates_are_left_out_of_data_without_time_order(tmp_path):
    settings = make_settings("file:///nonexistent", (tmp_path / "out").as_uri(), model="auto")
    pool, skipped = candidates(settings, n_items=80, ordered=False)
    assert {"sasrec", "transitions"} <= set(skipped) and "event times" in skipped["sasrec"]
    assert not {"sasrec", "transitions"} & {c.name for c in pool}


def test_cfgan_is_tried_only_when_named():
    """Not a default candidate (hundreds of epochs, past a night's budget on the CPU workers); named, it is."""
    settings = make_settings("file:///nonexistent", "file:///nonexistent-out", model="auto")
    assert not {"cfgan", "cfgan+ease"} & {c.name for c in candidates(settings, n_items=80)[0]}
    named = make_settings(
        "file:///nonexistent", "file:///nonexistent-out", model="auto", selection={"candidates": ["ease", "cfgan+ease"]}
    )
    assert [c.name for c in candidates(named, n_items=80)[0]] == ["ease", "cfgan+ease"]


def test_without_a_day_to_judge_on_the_first_fallback_that_fits_is_served(tmp_path):
    settings = make_settings("file:///nonexistent", (tmp_path / "out").as_uri(), model="auto", ease={"max_items": 50})
    result = unjudged(settings, 80, DAY, "a window of two days")
    assert (result.winner, result.candidates, result.reason) == ("item_knn", [], "a window of two days")
    assert unjudged(settings, 40, DAY, "short").winner == "ease"


def test_selection_settings_are_validated_by_name(tmp_path):
    with pytest.raises(ConfigError, match=r"selection.candidates.*unknown models \['gru4rec'\]"):
        _settings(tmp_path, candidates=["ease", "gru4rec"])
    with pytest.raises(ConfigError, match=r"selection.budget_minutes"):
        _settings(tmp_path, budget_minutes=0)
    with pytest.raises(ConfigError, match="tuning.enabled needs a named model"):
        make_settings("file:///x", "file:///y", model="auto", tuning={"enabled": True})
    assert make_settings("file:///x", "file:///y", model="auto").selection.candidates is None
