"""The shared contract every model passes, plus model-specific checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scipy.sparse as sp

from genrec_core.config import CFGANConfig, EASEConfig, ItemKNNConfig, MultVAEConfig, RecVAEConfig
from genrec_core.data.interactions import Interactions, Vocabulary
from genrec_core.models.base import FitOptions, Recommender
from genrec_core.models.ease import EASE
from genrec_core.models.item_knn import ItemKNN
from genrec_core.models.mult_vae import MultVAE, mult_vae_loss
from genrec_core.models.cfgan import CFGAN
from genrec_core.models.popularity import Popularity
from genrec_core.models.rec_vae import RecVAE
from genrec_core.score import iter_top_k
from genrec_core.storage import Storage
from tests.toy import two_block_interactions

OPTIONS = FitOptions(seed=1, device="cpu", threads=2)


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

    def test_scores_have_one_row_per_user_and_a_column_per_item(self, fitted, data):
        scores = fitted.score(data.matrix[:7])
        assert scores.shape == (7, data.n_items) and torch.isfinite(scores).all()

    def test_save_load_round_trip(self, fitted, data, tmp_path):
        uri = (tmp_path / "model").as_uri()
        fitted.save(uri, Storage())
        loaded = Recommender.load(uri, Storage())
        assert type(loaded) is type(fitted)
        torch.testing.assert_close(loaded.score(data.matrix), fitted.score(data.matrix))

    def test_batch_equals_one_by_one(self, fitted, data):
        batch = fitted.score(data.matrix[:10])
        single = torch.cat([fitted.score(data.matrix[i:i + 1]) for i in range(10)])
        torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)

    def test_same_seed_same_scores(self, fitted, data):
        again = self.make_model().fit(data, OPTIONS)
        torch.testing.assert_close(again.score(data.matrix), fitted.score(data.matrix))

    def test_learns_from_the_data(self, fitted, data):
        shuffled = data.matrix[:, np.random.default_rng(5).permutation(data.n_items)]
        other = self.make_model().fit(Interactions(shuffled.tocsr(), data.users, data.items), OPTIONS)
        assert not torch.allclose(other.score(data.matrix), fitted.score(data.matrix))

    def test_seen_items_never_recommended(self, fitted, data):
        users = np.arange(data.n_users)
        for chunk in iter_top_k(fitted, data.matrix, users, k=5, chunk_size=16):
            for u, row in zip(chunk.users, chunk.items):
                assert not set(row.tolist()) & set(data.matrix[u].indices.tolist())

    def test_rejects_a_history_of_the_wrong_width(self, fitted, data):
        with pytest.raises(ValueError, match="item columns"):
            fitted.score(data.matrix[:, :5])

    def test_refuses_to_fit_an_empty_matrix(self, data):
        import scipy.sparse as sp

        empty = Interactions(sp.csr_matrix(data.matrix.shape, dtype=np.float32), data.users, data.items)
        with pytest.raises(ValueError, match="empty"):
            self.make_model().fit(empty, OPTIONS)


class TestPopularity(ModelContract):
    @classmethod
    def make_model(cls) -> Recommender:
        return Popularity()

    def test_known_answer(self, data):
        model = Popularity().fit(data, OPTIONS)
        counts = np.asarray(data.matrix.sum(axis=0)).ravel()
        order = torch.argsort(model.score(data.matrix[:1])[0], descending=True, stable=True).numpy()
        assert (np.diff(counts[order]) <= 0).all()


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
        for chunk in iter_top_k(fitted, data.matrix, np.arange(data.n_users), k=3, chunk_size=64):
            block = (chunk.users >= data.n_users // 2).astype(int)
            in_block += int(((chunk.items // half) == block[:, None]).sum())
            total += chunk.items.size
        assert in_block / total > 0.95

    def test_parameters_change_after_a_training_epoch(self, data):
        model = self.make_model(epochs=1)
        initial = {k: v.clone() for k, v in model.initial_network(data.n_items, OPTIONS.seed).named_parameters()}
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
        yesterday = Interactions(data.matrix[:, :old_items].tocsr(),
                                 data.users, Vocabulary(data.items.ids[:old_items]))
        previous = self.make_model().fit(yesterday, OPTIONS)
        fresh = self.make_model().initial_network(data.n_items, OPTIONS.seed).state_dict()
        grown = grow_state(previous.net.state_dict(), fresh)
        for name, old in previous.net.state_dict().items():
            region = grown[name][tuple(slice(0, n) for n in old.shape)]
            assert torch.equal(region, old), f"{name}: an old weight moved or changed in the warm start"
        tuned = self.make_model().fit(data, FitOptions(seed=1, threads=2, warm_start=previous))
        assert tuned.n_items == data.n_items and tuned.warm_started
        scores = tuned.score(data.matrix)
        block_1 = np.arange(data.n_users) >= data.n_users // 2
        new = scores[:, old_items:]
        assert new[torch.from_numpy(block_1)].mean() > new[torch.from_numpy(~block_1)].mean()
        uri = (tmp_path / "tuned").as_uri()
        tuned.save(uri, Storage())
        torch.testing.assert_close(Recommender.load(uri, Storage()).score(data.matrix), scores)

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
        torch.testing.assert_close(resumed.score(data.matrix), uninterrupted.score(data.matrix))


class TestMultVAE(NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return MultVAE(MultVAEConfig(**{"hidden_dim": 32, "latent_dim": 8, "epochs": 60, "batch_size": 20,
                                        "total_anneal_steps": 100, "dropout": 0.2, **overrides}))


class TestRecVAE(NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return RecVAE(RecVAEConfig(**{"hidden_dim": 32, "latent_dim": 8, "epochs": 25, "batch_size": 20,
                                      "learning_rate": 3e-3, "dropout": 0.2, **overrides}))

    def test_composite_prior_is_the_weighted_mixture(self):
        from genrec_core.models.rec_vae import RecVAENet

        net = RecVAENet(5, 4, 3, (0.2, 0.5, 0.3))
        x = torch.tensor([[1.0, 0, 1, 0, 0]])
        z = torch.tensor([[0.3, -1.0, 2.0]])
        mu, logvar = net.prior_encoder.eval()(x, dropout=0.0)
        normal = torch.distributions.Normal
        expected = torch.log(0.2 * normal(0.0, 1.0).log_prob(z).exp()
                             + 0.5 * normal(mu, torch.exp(0.5 * logvar)).log_prob(z).exp()
                             + 0.3 * normal(0.0, float(np.exp(5.0))).log_prob(z).exp())
        torch.testing.assert_close(net.log_prior(x, z), expected.detach(), atol=1e-5, rtol=1e-5)


class TestRecVAEWithLinearExpert(NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return RecVAE(RecVAEConfig(**{"hidden_dim": 32, "latent_dim": 8, "epochs": 25, "batch_size": 20,
                                      "learning_rate": 3e-3, "dropout": 0.2, "linear_expert": True,
                                      "expert_l2": 10.0, "expert_weight": 3.0, **overrides}))

    def test_scores_are_the_product_of_the_two_experts(self, fitted, data):
        x = torch.from_numpy((data.matrix.toarray() > 0).astype(np.float32))
        plain = RecVAE(fitted.config)
        plain.load_state(fitted.config_dict(), fitted.n_items, fitted.net.state_dict())
        ease = EASE(EASEConfig(l2=10.0)).fit(data, OPTIONS)
        expected = torch.log_softmax(plain.score(data.matrix), dim=1) + 3.0 * (x @ ease.weights)
        torch.testing.assert_close(fitted.score(data.matrix), expected, atol=1e-4, rtol=1e-4)

    def test_weight_and_l2_are_chosen_on_validation(self, data):
        from genrec_core.models.base import Validation

        validation = Validation(data.matrix, data.matrix, k=5)  # any held-out set: only the choice is checked
        model = self.make_model(expert_l2=None, expert_weight=None, epochs=2)
        model.fit(data, FitOptions(seed=1, threads=2, validation=validation))
        from genrec_core.models.neural import EXPERT_L2_GRID, EXPERT_WEIGHT_GRID

        assert model.expert_l2 in EXPERT_L2_GRID and model.expert_weight in EXPERT_WEIGHT_GRID
        half = Interactions(data.matrix[:30].tocsr(), Vocabulary(data.users.ids[:30]), data.items)
        before = model.expert.clone()
        model.refit_expert(half)
        expected = EASE(EASEConfig(l2=model.expert_l2)).fit(half, OPTIONS).weights
        assert not torch.equal(before, model.expert)
        torch.testing.assert_close(model.expert, expected)


class TestCFGAN(NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return CFGAN(CFGANConfig(**{"generator_hidden": 32, "discriminator_hidden": 16, "discriminator_layers": 2,
                                    "epochs": 150, "batch_size": 20, "learning_rate": 3e-3, "zr_weight": 0.1,
                                    "finetune_epochs": 40, **overrides}))


def test_cfgan_losses_match_the_paper():
    """D: -log D(real) - log(1 - D(fake)); G: log(1 - D(fake)) + alpha * sum over ZR items of G^2."""
    from genrec_core.models.cfgan import discriminator_loss, generator_loss

    real, fake = torch.tensor([0.4, -1.2]), torch.tensor([-0.3, 2.0])
    generated = torch.tensor([[0.2, 0.9, 0.5], [0.1, 0.3, 0.7]])
    zr = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    sig = torch.sigmoid
    d_expected = (-torch.log(sig(real)) - torch.log(1 - sig(fake))).mean()
    g_expected = (torch.log(1 - sig(fake)) + 0.5 * torch.tensor([0.2**2 + 0.5**2, 0.3**2])).mean()
    torch.testing.assert_close(discriminator_loss(real, fake), d_expected)
    torch.testing.assert_close(generator_loss(fake, generated, zr, 0.5), g_expected)


def test_mult_vae_loss_matches_the_reference_formula():
    """Liang et al. 2018, eq. for the annealed ELBO: -E[log p(x|z)] + beta * KL(N(mu, sigma^2) || N(0, I))."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6))
    x = (rng.random((4, 6)) < 0.4).astype(float)
    mu, logvar = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) * 0.3
    beta = 0.15
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    neg_ll = -(log_softmax * x).sum(axis=1).mean()
    kl = (0.5 * (np.exp(logvar) + mu**2 - 1.0 - logvar)).sum(axis=1).mean()
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    loss, got_nll, got_kl = mult_vae_loss(t(logits), t(x), t(mu), t(logvar), beta)
    assert got_nll.item() == pytest.approx(neg_ll, rel=1e-12)
    assert got_kl.item() == pytest.approx(kl, rel=1e-12)
    assert loss.item() == pytest.approx(neg_ll + beta * kl, rel=1e-12)


def test_mult_vae_sparse_scoring_equals_the_dense_network():
    data = two_block_interactions()
    model = MultVAE(MultVAEConfig(hidden_dim=16, latent_dim=4, epochs=2, batch_size=20)).fit(data, OPTIONS)
    weighted = data.matrix.copy()
    weighted.data = weighted.data * 3.0  # weights > 1 are binarised, as in training
    with torch.no_grad():
        dense = torch.from_numpy((data.matrix.toarray() > 0).astype(np.float32))
        expected, _, _ = model.net(dense)
    torch.testing.assert_close(model.score(weighted), expected, atol=1e-5, rtol=1e-5)


class TestEASE(ModelContract):
    @classmethod
    def make_model(cls) -> Recommender:
        return EASE(EASEConfig(l2=10.0))

    def test_matches_the_closed_form(self):
        x = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 1, 1]], dtype=np.float64)
        l2 = 2.0
        p = np.linalg.inv(x.T @ x + l2 * np.eye(4))
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        data = Interactions(sp.csr_matrix(x.astype(np.float32)), Vocabulary(np.array(list("abcd"), dtype=object)),
                            Vocabulary(np.array(list("wxyz"), dtype=object)))
        model = EASE(EASEConfig(l2=l2)).fit(data, OPTIONS)
        np.testing.assert_allclose(model.weights.numpy(), b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.score(data.matrix).numpy(), x @ b, rtol=1e-5, atol=1e-5)

    def test_refuses_a_catalogue_too_large(self, data):
        with pytest.raises(ValueError, match="max_items"):
            EASE(EASEConfig(max_items=5)).fit(data, OPTIONS)


class TestItemKNN(ModelContract):
    @classmethod
    def make_model(cls) -> Recommender:
        return ItemKNN(ItemKNNConfig(neighbors=5, shrink=1.0))

    def test_similarity_is_shrunk_cosine_with_k_neighbors(self):
        x = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float32)
        data = Interactions(sp.csr_matrix(x), Vocabulary(np.array(list("abc"), dtype=object)),
                            Vocabulary(np.array(list("xyz"), dtype=object)))
        model = ItemKNN(ItemKNNConfig(neighbors=1, shrink=0.5)).fit(data, OPTIONS)
        co = x.T @ x
        norms = np.sqrt(np.diag(co))
        sim = co / (np.outer(norms, norms) + 0.5)
        np.fill_diagonal(sim, 0.0)
        got = model.similarity.toarray()
        for j in range(3):  # one neighbour kept per item (column): the most similar
            i = int(np.argmax(sim[:, j]))
            assert got[i, j] == pytest.approx(sim[i, j]) and np.count_nonzero(got[:, j]) == 1


def test_mult_vae_early_stopping_restores_the_best_validation_epoch():
    from genrec_core.evaluate import evaluate
    from genrec_core.models.base import Validation

    data = two_block_interactions(users_per_block=40, per_user=8, seed=4)
    # hold out one item per user for validation
    fit = data.matrix.tolil(copy=True)
    valid = sp.lil_matrix(data.matrix.shape, dtype=np.float32)
    for u in range(data.n_users):
        item = data.matrix[u].indices[0]
        fit[u, item] = 0
        valid[u, item] = 1
    fit, valid = fit.tocsr(), valid.tocsr()
    fit.eliminate_zeros()
    validation = Validation(fit, valid, k=5, patience=3)
    model = MultVAE(MultVAEConfig(hidden_dim=16, latent_dim=4, epochs=40, batch_size=20, total_anneal_steps=50))
    model.fit(Interactions(fit, data.users, data.items), FitOptions(seed=1, threads=2, validation=validation))
    log = model.training_log
    assert all("val_ndcg" in entry for entry in log)
    best = max(entry["val_ndcg"] for entry in log)
    assert model.best_epoch == next(e["epoch"] for e in log if e["val_ndcg"] == best)
    assert len(log) == 40 or len(log) - model.best_epoch == 3  # stopped after `patience` epochs without gain
    assert evaluate(model, fit, valid, 5)["ndcg@5"] == pytest.approx(best)
