"""Fine-tune or retrain: the decision rules, and a fine-tune from D-1's artifact through the pipeline."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from genrec_core import layout, pipeline
from genrec_core.data.interactions import Vocabulary
from genrec_core.errors import ConfigError, DataError
from genrec_core.models.registry import load_model
from genrec_core.storage import Storage, join
from genrec_core.train.plan import PLAN_FILE, plan_training, selection_settings
from tests.support import RUN_DATE, make_settings

YESTERDAY = RUN_DATE - dt.timedelta(days=1)


def _items(n: int) -> Vocabulary:
    return Vocabulary(np.array([f"i{j}" for j in range(n)], dtype=object))


def _artifact(settings, day: dt.date, items: Vocabulary, last_full_retrain: dt.date, items_at_retrain: int) -> str:
    storage = Storage()
    uri = layout.model_uri(settings.output_uri, settings.model, day)
    storage.write_table(join(uri, "vocab", "items", "part-0.parquet"), items.to_table())
    storage.write_json(
        join(uri, "config.json"),
        {"model": settings.model, "n_items": len(items), "config": settings.mult_vae.model_dump(mode="json")},
    )
    storage.write_json(
        join(uri, PLAN_FILE),
        {
            "mode": "retrain",
            "reason": "",
            "base_uri": None,
            "last_full_retrain": last_full_retrain.isoformat(),
            "items_at_retrain": items_at_retrain,
        },
    )
    return uri


@pytest.fixture()
def settings(tmp_path):
    return make_settings("file:///nonexistent", (tmp_path / "out").as_uri())


def test_auto_fine_tunes_from_the_model_of_d_minus_1(settings):
    base = _artifact(settings, YESTERDAY, _items(100), YESTERDAY, 100)
    plan = plan_training(settings, RUN_DATE, _items(104), Storage(), published_before=True)
    assert (plan.mode, plan.base_uri, plan.last_full_retrain) == ("finetune", base, YESTERDAY.isoformat())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"last": RUN_DATE - dt.timedelta(days=7)}, "days old"),
        ({"today_items": 120}, "vocabulary grew"),
        ({"published": False}, "not published"),
        ({"vocab": Vocabulary(np.array([f"x{j}" for j in range(100)], dtype=object))}, "not a prefix"),
        ({"settings": {"hidden_dim": 128}}, "mult_vae settings changed"),
    ],
)
def test_auto_retrains_when_a_retrain_is_due(settings, change, expected):
    _artifact(settings, YESTERDAY, change.get("vocab", _items(100)), change.get("last", YESTERDAY), 100)
    if "settings" in change:  # the operator changed the model's settings since D-1's model was trained
        settings = settings.model_copy(update={"mult_vae": settings.mult_vae.model_copy(update=change["settings"])})
    plan = plan_training(
        settings,
        RUN_DATE,
        _items(change.get("today_items", 104)),
        Storage(),
        published_before=change.get("published", True),
    )
    assert plan.mode == "retrain" and expected in plan.reason
    assert plan.last_full_retrain == RUN_DATE.isoformat() and plan.base_uri is None


def test_never_starts_from_a_model_dated_after_d(settings):
    """A backfill of D may run after D+1's model exists: it must not use it (only D-1 counts)."""
    _artifact(settings, RUN_DATE + dt.timedelta(days=1), _items(100), RUN_DATE, 100)
    plan = plan_training(settings, RUN_DATE, _items(100), Storage(), published_before=True)
    assert plan.mode == "retrain" and str(YESTERDAY) in plan.reason
    explicit = settings.updated(train={"mode": "finetune"})
    with pytest.raises(DataError, match=f"cannot fine-tune for {RUN_DATE}: no mult_vae model for {YESTERDAY}"):
        plan_training(explicit, RUN_DATE, _items(100), Storage(), published_before=True)


def test_closed_form_models_always_retrain_and_refuse_an_explicit_fine_tune(settings):
    ease = settings.model_copy(update={"model": "ease"})
    assert plan_training(ease, RUN_DATE, _items(10), Storage(), None).mode == "retrain"
    with pytest.raises(ConfigError, match="ease is fitted in closed form"):
        plan_training(ease.updated(train={"mode": "finetune"}), RUN_DATE, _items(10), Storage(), None)


def test_fine_tune_through_the_pipeline_with_new_items(tiny_log_dir, tmp_path):
    """D-1 trains from scratch; D fine-tunes from D-1's artifact onto D's grown vocabulary; a rerun of D
    (a backfill) gives the same weights."""
    import torch

    out = (tmp_path / "out").as_uri()
    first = make_settings(tiny_log_dir.as_uri(), out)
    extracted = pipeline.extract(first, YESTERDAY)
    trained = pipeline.train(first, YESTERDAY, extracted)
    assert trained.mode == "retrain"
    tune = make_settings(tiny_log_dir.as_uri(), out, train={"mode": "finetune"})
    extracted = pipeline.extract(tune, RUN_DATE)
    tuned = pipeline.train(tune, RUN_DATE, extracted)
    storage = Storage()
    plan = storage.read_json(join(tuned.model_uri, PLAN_FILE))
    assert plan["mode"] == "finetune" and plan["base_uri"] == trained.model_uri
    before = load_model(trained.model_uri, storage)
    after = load_model(tuned.model_uri, storage)
    from genrec_core.data.interactions import ExtractedData

    today_items = len(ExtractedData(extracted.extract_uri, RUN_DATE, storage).items())
    assert before.n_items <= after.n_items == today_items
    again = pipeline.train(tune, RUN_DATE, extracted)
    rerun = load_model(again.model_uri, storage)
    for name, tensor in after.state().items():
        assert torch.equal(tensor, rerun.state()[name]), name


# ---- auto lines (model = "auto"): select on a full retrain, continue the winner in between -------------


def _auto_artifact(settings, served: str = "mult_vae", last: dt.date = YESTERDAY, items: int = 100, digest=None) -> str:
    storage = Storage()
    uri = layout.model_uri(settings.output_uri, "auto", YESTERDAY)
    storage.write_table(join(uri, "vocab", "items", "part-0.parquet"), _items(items).to_table())
    storage.write_json(join(uri, "config.json"), {"model": served, "n_items": items, "config": {}})
    storage.write_json(join(uri, "selection.json"), {"winner": served, "selected_on": last.isoformat()})
    storage.write_json(
        join(uri, PLAN_FILE),
        {
            "mode": "retrain",
            "reason": "",
            "base_uri": None,
            "last_full_retrain": last.isoformat(),
            "items_at_retrain": items,
            "select": True,
            "selection_settings": digest or selection_settings(settings),
        },
    )
    return uri


@pytest.fixture()
def auto(tmp_path):
    return make_settings("file:///nonexistent", (tmp_path / "out").as_uri(), model="auto")


def test_an_auto_line_without_yesterdays_model_selects(auto):
    plan = plan_training(auto, RUN_DATE, _items(100), Storage(), published_before=None)
    assert plan.select and plan.mode == "retrain" and "no auto-selected model" in plan.reason
    assert plan.selection_settings == selection_settings(auto) and plan.last_full_retrain == RUN_DATE.isoformat()


def test_an_auto_line_fine_tunes_its_winner_between_selections(auto):
    base = _auto_artifact(auto, "rec_vae", last=RUN_DATE - dt.timedelta(days=3))
    plan = plan_training(auto, RUN_DATE, _items(104), Storage(), published_before=True)
    assert (plan.mode, plan.select, plan.base_uri) == ("finetune", False, base)
    assert plan.last_full_retrain == (RUN_DATE - dt.timedelta(days=3)).isoformat()  # the selection's date, carried
    assert "rec_vae" in plan.reason and plan.selection_settings == selection_settings(auto)


def test_an_auto_line_refits_a_closed_form_winner_without_selecting(auto):
    base = _auto_artifact(auto, "ease")
    plan = plan_training(auto, RUN_DATE, _items(100), Storage(), published_before=True)
    assert (plan.mode, plan.select, plan.base_uri) == ("retrain", False, base)
    assert "closed form" in plan.reason
    with pytest.raises(ConfigError, match="the served model ease is fitted in closed form"):
        plan_training(auto.updated(train={"mode": "finetune"}), RUN_DATE, _items(100), Storage(), True)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"last": RUN_DATE - dt.timedelta(days=7)}, "last selection"),
        ({"today_items": 120}, "vocabulary grew"),
        ({"published": False}, "not published"),
        ({"settings": {"selection": {"metric": "recall"}}}, "selection settings changed"),
        ({"settings": {"rec_vae": {"hidden_dim": 128}}}, "selection settings changed"),  # a candidate's section
        ({"settings": {"train": {"mode": "retrain"}}}, "retrain requested"),
    ],
)
def test_an_auto_line_selects_again_when_a_retrain_is_due(auto, change, expected):
    _auto_artifact(auto, "mult_vae", last=change.get("last", YESTERDAY))
    settings = auto.updated(**change.get("settings", {}))
    plan = plan_training(
        settings, RUN_DATE, _items(change.get("today_items", 100)), Storage(), change.get("published", True)
    )
    assert plan.select and plan.mode == "retrain" and expected in plan.reason, plan.reason
