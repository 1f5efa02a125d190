"""The contract every model passes (LensKit style): a model's test class inherits `ModelContract`
(or `NeuralContract` for an iterative PyTorch model) and sets `make_model`; that is all a new model needs."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec_core.data.interactions import Interactions, Vocabulary
from genrec_core.data.sequences import ranks_in_rows
from genrec_core.models.base import FitOptions, Recommender, Validation
from genrec_core.models.popularity.model import Popularity
from genrec_core.models.registry import load_model, model_names
from genrec_core.ranking.topk import iter_top_k
from genrec_core.storage import Storage
from tests.support import two_block_interactions

OPTIONS = FitOptions(seed=1, device="cpu", threads=2)


def everyone(data: Interactions) -> np.ndarray:
    """The user indices of all of `data`'s rows (a model may score known users by identity)."""
    return np.arange(data.n_users)


def reshaped(data: Interactions, columns: np.ndarray) -> Interactions:
    """`data` with only (and in the order of) item `columns`; its time order follows, re-ranked."""
    items = Vocabulary(data.items.ids[columns])
    order = None
    if data.order is not None:
        order = data.order[:, columns].tocsr()
        order.data = ranks_in_rows(order.indptr, order.data, order.indices)
    return Interactions(data.matrix[:, columns].tocsr(), data.users, items, order)


class ModelContract:
    """Subclasses set `make_model`; every model must pass these."""

    @classmethod
    def make_model(cls) -> Recommender:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> Interactions:
        return two_block_interactions()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: Interactions) -> Recommender:
        return cls.make_model().fit(data, OPTIONS)

    def test_describes_itself(self, fitted):
        spec = type(fitted).spec
        assert spec.name == fitted.name in model_names() and spec.load_class() is type(fitted)
        if spec.config_class is not None:
            assert isinstance(fitted.config, spec.config_class)
            assert spec.parse_config(fitted.config_dict()) == fitted.config
        if spec.search_space is not None:
            import optuna

            trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
            spec.parse_config({**spec.default_config().model_dump(), **spec.search_space(trial)})

    def test_scores_have_one_row_per_user_and_a_column_per_item(self, fitted, data):
        scores = fitted.score(fitted.history_of(data)[:7], np.arange(7))
        assert scores.shape == (7, data.n_items) and torch.isfinite(scores).all()

    def test_save_load_round_trip(self, fitted, data, tmp_path):
        uri = (tmp_path / "model").as_uri()
        fitted.save(uri, Storage())
        loaded = load_model(uri, Storage())
        assert type(loaded) is type(fitted)
        history = fitted.history_of(data)
        torch.testing.assert_close(loaded.score(history, everyone(data)), fitted.score(history, everyone(data)))

    def test_batch_equals_one_by_one(self, fitted, data):
        history = fitted.history_of(data)
        batch = fitted.score(history[:10], np.arange(10))
        single = torch.cat([fitted.score(history[i : i + 1], np.array([i])) for i in range(10)])
        torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)

    def test_same_seed_same_scores(self, fitted, data):
        again = self.make_model().fit(data, OPTIONS)
        history = fitted.history_of(data)
        torch.testing.assert_close(again.score(history, everyone(data)), fitted.score(history, everyone(data)))

    def test_learns_from_the_data(self, fitted, data):
        shuffled = reshaped(data, np.random.default_rng(5).permutation(data.n_items))
        other = self.make_model().fit(Interactions(shuffled.matrix, data.users, data.items, shuffled.order), OPTIONS)
        history = fitted.history_of(data)
        assert not torch.allclose(other.score(history, everyone(data)), fitted.score(history, everyone(data)))

    def test_seen_items_never_recommended(self, fitted, data):
        users = np.arange(data.n_users)
        for chunk in iter_top_k(fitted, fitted.history_of(data), users, k=5, chunk_size=16):
            for u, row in zip(chunk.users, chunk.items):
                assert not set(row.tolist()) & set(data.matrix[u].indices.tolist())

    def test_rejects_a_history_of_the_wrong_width(self, fitted, data):
        with pytest.raises(ValueError, match="item columns"):
            fitted.score(fitted.history_of(data)[:, :5], np.arange(data.n_users))

    def test_refuses_to_fit_an_empty_matrix(self, data):

        nothing = sp.csr_matrix(data.matrix.shape, dtype=np.float32)
        empty = Interactions(nothing, data.users, data.items, nothing if data.order is not None else None)
        with pytest.raises(ValueError, match="empty"):
            self.make_model().fit(empty, OPTIONS)


class NeuralContract(ModelContract):
    """What every PyTorch model must also pass: it learns the toy's structure, every parameter
    moves, training leaves global randomness alone, fine-tuning onto a grown vocabulary works,
    and a run resumed from its checkpoint ends exactly where an uninterrupted one does."""

    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        raise NotImplementedError

    def test_known_answer_recommends_within_the_taste_group(self, fitted, data):
        """Each user's top-3 unseen items come from the user's own block (the other block is never used)."""
        half = data.n_items // 2
        in_block = total = 0
        for chunk in iter_top_k(fitted, fitted.history_of(data), np.arange(data.n_users), k=3, chunk_size=64):
            block = (chunk.users >= data.n_users // 2).astype(int)
            in_block += int(((chunk.items // half) == block[:, None]).sum())
            total += chunk.items.size
        assert in_block / total > 0.95

    def test_parameters_change_after_a_training_epoch(self, data):
        model = self.make_model(epochs=1)
        initial = {
            k: v.clone() for k, v in model.initial_network(data.n_items, OPTIONS.seed, data.n_users).named_parameters()
        }
        model.fit(data, OPTIONS)
        for name, param in model.net.named_parameters():
            assert not torch.equal(initial[name], param.detach()), f"{name} did not change"

    def test_fit_leaves_global_rng_untouched(self, data):
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        self.make_model(epochs=1).fit(data, OPTIONS)
        torch.testing.assert_close(torch.rand(3), expected)

    def test_fine_tunes_onto_five_percent_new_items(self, fitted, data, tmp_path):
        """Yesterday's model knew 38 of 40 items; today two new items of block 1 appear. The warm start keeps
        every old weight at its index, and after fine-tuning the new items go to block-1 users."""
        from genrec_core.models.neural import grow_state

        old_items = data.n_items - 2
        yesterday = reshaped(data, np.arange(old_items))
        previous = self.make_model().fit(yesterday, OPTIONS)
        fresh = self.make_model().initial_network(data.n_items, OPTIONS.seed, data.n_users).state_dict()
        grown = grow_state(previous.net.state_dict(), fresh)
        for name, old in previous.net.state_dict().items():
            region = grown[name][tuple(slice(0, n) for n in old.shape)]
            assert torch.equal(region, old), f"{name}: an old weight moved or changed in the warm start"
        tuned = self.make_model().fit(data, FitOptions(seed=1, threads=2, warm_start=previous))
        assert tuned.n_items == data.n_items and tuned.warm_started
        scores = tuned.score(tuned.history_of(data), everyone(data))
        block_1 = np.arange(data.n_users) >= data.n_users // 2
        new = scores[:, old_items:]
        assert new[torch.from_numpy(block_1)].mean() > new[torch.from_numpy(~block_1)].mean()
        uri = (tmp_path / "tuned").as_uri()
        tuned.save(uri, Storage())
        torch.testing.assert_close(load_model(uri, Storage()).score(tuned.history_of(data), everyone(data)), scores)

    def test_each_epoch_logs_one_progress_line(self, data, caplog):
        """Epoch, losses, the validation metric with the best so far, seconds and an ETA, at INFO."""
        validation = Validation.between(data, data, k=5, patience=2)
        with caplog.at_level(logging.INFO, logger="genrec_core.models.neural"):
            model = self.make_model(epochs=4).fit(data, FitOptions(seed=1, threads=2, validation=validation))
        lines = [r.getMessage() for r in caplog.records if " epoch " in r.getMessage()]
        assert len(lines) == len(model.training_log) >= 1
        pattern = (
            rf"{model.name} epoch (\d+)/4: \w+ -?[\d.e+-]+.*, val ndcg@5 [\d.]+ "
            r"\(best [\d.]+ at epoch \d+\), [\d.]+ s, ETA ≤ \d+ s$"
        )
        for number, line in enumerate(lines, start=1):
            found = re.fullmatch(pattern, line)
            assert found and int(found.group(1)) == number, line

    def test_early_stopping_waits_for_patience_in_epochs_and_in_updates(self, data):
        """With a validation score that never improves after epoch 1, the fit stops once `patience` epochs and
        `patience_updates` optimizer updates have passed since it."""
        no_targets = sp.csr_matrix(data.matrix.shape, dtype=np.float32)  # nobody to judge: the score stays 0
        never = Validation(data.matrix, no_targets, k=5, patience=2, order=data.order)
        epochs = self.make_model(epochs=60).fit(data, FitOptions(seed=1, threads=2, validation=never))
        assert len(epochs.training_log) == 3 and epochs.best_epoch == 1
        per_epoch = epochs.training_log[0]["updates"]
        patient = Validation(
            data.matrix, no_targets, k=5, patience=2, patience_updates=int(per_epoch * 6), order=data.order
        )
        updates = self.make_model(epochs=60).fit(data, FitOptions(seed=1, threads=2, validation=patient))
        assert len(updates.training_log) == 7  # 6 epochs' worth of updates after the best, the first
        assert updates.training_log[-1]["updates"] - updates.training_log[0]["updates"] >= patient.patience_updates

    def test_warm_start_refuses_another_kind_of_model(self, data):
        with pytest.raises(ValueError, match="warm-start"):
            self.make_model().fit(data, FitOptions(seed=1, warm_start=Popularity().fit(data, OPTIONS)))

    def test_resume_after_a_crash_ends_where_an_uninterrupted_run_does(self, data, tmp_path, monkeypatch):
        cls = type(self.make_model())
        uninterrupted = self.make_model(epochs=4).fit(data, OPTIONS)
        options = FitOptions(seed=1, threads=2, checkpoint_dir=str(tmp_path / "ckpt"))
        real_epoch = cls._train_epoch
        calls = {"n": 0}

        def crashing(model, *args):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("worker lost")
            return real_epoch(model, *args)

        monkeypatch.setattr(cls, "_train_epoch", crashing)
        with pytest.raises(RuntimeError, match="worker lost"):
            self.make_model(epochs=4).fit(data, options)
        monkeypatch.setattr(cls, "_train_epoch", real_epoch)
        resumed = self.make_model(epochs=4).fit(data, options)
        assert [e["epoch"] for e in resumed.training_log] == [1, 2, 3, 4]
        seconds = [e["seconds"] for e in resumed.training_log]
        assert seconds == sorted(seconds) and seconds[2] > seconds[1]  # counted on from before the crash
        history = resumed.history_of(data)
        torch.testing.assert_close(resumed.score(history, everyone(data)), uninterrupted.score(history, everyone(data)))
