"""The optional hyperparameter search: spaces, budget, reproducibility, and the pipeline step."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import scipy.sparse as sp

from genrec_core import pipeline
from genrec_core.data.interactions import Interactions
from genrec_core.models.base import FitOptions, Validation
from genrec_core.models.ease import EASEConfig
from genrec_core.models.ease.model import EASE
from genrec_core.models.item_knn import ItemKNNConfig
from genrec_core.models.mult_vae import MultVAEConfig
from genrec_core.models.mult_vae.model import MultVAE
from genrec_core.models.registry import load_model, model_spec
from genrec_core.ranking.metrics import evaluate
from genrec_core.storage import Storage, join
from genrec_core.train.plan import PLAN_FILE, TUNING_FILE
from genrec_core.train.tuning import TuneBudget, tunable, tune
from tests.support import RUN_DATE, make_settings, two_block_interactions

OPTIONS = FitOptions(seed=3, device="cpu", threads=2)


def _carve(data: Interactions) -> tuple[Interactions, Validation]:
    """Hold out each user's last item for validation."""
    m = data.matrix.tocsr()
    keep = m.copy().tolil()
    held = sp.lil_matrix(m.shape, dtype=np.float32)
    for u in range(m.shape[0]):
        last = m.indices[m.indptr[u + 1] - 1]
        keep[u, last], held[u, last] = 0, 1
    fit = sp.csr_matrix(keep)
    fit.eliminate_zeros()
    return Interactions(fit, data.users, data.items), Validation(fit, sp.csr_matrix(held), k=5)


@pytest.mark.parametrize("name", sorted(tunable()))
def test_every_search_space_yields_valid_configs(name):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        config_class = model_spec(name).config_class
        config_class.model_validate({**config_class().model_dump(), **model_spec(name).search_space(trial)})
        study.tell(trial, 0.0)


def test_ease_search_returns_its_best_trial_reproducibly():
    fit, validation = _carve(two_block_interactions())
    result = tune("ease", EASEConfig(), fit, validation, TuneBudget(trials=6, timeout_s=None), OPTIONS)
    values = [t["value"] for t in result.trials]
    assert len(values) == 6 and result.best_value == max(values) and not result.stopped_by_timeout
    # the returned config really scores the reported value
    model = EASE(EASEConfig.model_validate(result.best_config)).fit(fit, OPTIONS)
    assert evaluate(model, validation.history, validation.targets, 5)["ndcg@5"] == pytest.approx(result.best_value)
    again = tune("ease", EASEConfig(), fit, validation, TuneBudget(trials=6, timeout_s=None), OPTIONS)
    assert [t["params"] for t in again.trials] == [t["params"] for t in result.trials]


def test_neural_search_fixes_the_epoch_count_and_keeps_unsearched_settings():
    fit, validation = _carve(two_block_interactions())
    base = MultVAEConfig(epochs=8, total_anneal_steps=50, hidden_dim=32, latent_dim=8)
    result = tune("mult_vae", base, fit, validation, TuneBudget(trials=4, timeout_s=None, patience=3), OPTIONS)
    best = next(t for t in result.trials if t["value"] == result.best_value)
    assert result.best_config["epochs"] == best["best_epoch"] >= 1
    assert {k: result.best_config[k] for k in best["params"]} == best["params"]
    assert result.best_config["total_anneal_steps"] == 50  # not in the space: kept from the base config


def test_the_epoch_hook_sees_every_validation_and_can_abandon_a_fit():
    fit, validation = _carve(two_block_interactions())
    seen: list[tuple[int, float]] = []
    config = MultVAEConfig(epochs=4, hidden_dim=16, latent_dim=4)
    model = MultVAE(config).fit(
        fit,
        FitOptions(
            3,
            "cpu",
            2,
            Validation(
                validation.history, validation.targets, 5, patience=10, on_epoch=lambda e, v: seen.append((e, v))
            ),
        ),
    )
    assert seen == [(e["epoch"], e["val_ndcg"]) for e in model.training_log] and len(seen) == 4

    def prune(epoch: int, value: float) -> None:
        if epoch == 2:
            raise optuna.TrialPruned("behind")

    with pytest.raises(optuna.TrialPruned):
        MultVAE(config).fit(
            fit, FitOptions(3, "cpu", 2, Validation(validation.history, validation.targets, 5, on_epoch=prune))
        )


def test_a_timeout_ends_the_search_early_and_says_so():
    fit, validation = _carve(two_block_interactions())
    result = tune("item_knn", ItemKNNConfig(), fit, validation, TuneBudget(trials=100_000, timeout_s=0.5), OPTIONS)
    assert 1 <= len(result.trials) < 100_000 and result.stopped_by_timeout
    with pytest.raises(RuntimeError, match="item_knn: no trial completed within the budget"):
        tune("item_knn", ItemKNNConfig(), fit, validation, TuneBudget(trials=5, timeout_s=1e-9), OPTIONS)


def test_models_without_a_search_space_are_refused():
    fit, validation = _carve(two_block_interactions())
    with pytest.raises(ValueError, match="popularity.*no hyperparameters to tune"):
        tune("popularity", None, fit, validation, TuneBudget(trials=2), OPTIONS)


def test_pipeline_tunes_before_a_retrain_and_fine_tunes_keep_the_tuned_config(tiny_log_dir, tmp_path):
    """D-1 retrains after a search judged on D-2 (never on D-1's own holdout); D fine-tunes the tuned network."""
    import datetime as dt

    yesterday = RUN_DATE - dt.timedelta(days=1)
    settings = make_settings(
        tiny_log_dir.as_uri(),
        (tmp_path / "out").as_uri(),
        tuning={"enabled": True, "trials": 3, "timeout_minutes": None, "patience": 2},
    )
    storage = Storage()
    extracted = pipeline.extract(settings, yesterday)
    trained = pipeline.train(settings, yesterday, extracted)
    tuning = storage.read_json(join(trained.model_uri, TUNING_FILE))
    assert tuning["validation_day"] == (yesterday - dt.timedelta(days=1)).isoformat()
    assert len(tuning["trials"]) == 3 and trained.tuned == tuning["best_value"]
    model = load_model(trained.model_uri, storage)
    assert model.config.model_dump(mode="json") == tuning["best_config"]
    assert model.config != settings.mult_vae  # the search moved away from the configured settings

    extracted = pipeline.extract(settings, RUN_DATE)
    # nothing was published in this test, so `auto` would retrain; ask for the fine-tune explicitly
    tuned = pipeline.train(settings.updated(train={"mode": "finetune"}), RUN_DATE, extracted)
    assert tuned.mode == "finetune" and tuned.tuned is None
    assert not storage.exists(join(tuned.model_uri, TUNING_FILE))
    assert load_model(tuned.model_uri, storage).config == model.config
    assert storage.read_json(join(tuned.model_uri, PLAN_FILE))["base_uri"] == trained.model_uri
