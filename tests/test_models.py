"""The shared contract every model passes, plus model-specific checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scipy.sparse as sp

from genrec_core.config import EASEConfig, ItemKNNConfig, MultVAEConfig
from genrec_core.data.interactions import Interactions, Vocabulary
from genrec_core.models.base import FitOptions, Recommender
from genrec_core.models.ease import EASE
from genrec_core.models.item_knn import ItemKNN
from genrec_core.models.mult_vae import MultVAE, mult_vae_loss
from genrec_core.models.popularity import Popularity
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


class TestMultVAE(ModelContract):
    @classmethod
    def make_model(cls) -> Recommender:
        return MultVAE(MultVAEConfig(hidden_dim=32, latent_dim=8, epochs=60, batch_size=20, total_anneal_steps=100,
                                     dropout=0.2))

    def test_known_answer_recommends_within_the_taste_group(self, fitted, data):
        """Each user's top-3 unseen items come from the user's own block (the other block is never used)."""
        half = data.n_items // 2
        users = np.arange(data.n_users)
        in_block = 0
        total = 0
        for chunk in iter_top_k(fitted, data.matrix, users, k=3, chunk_size=64):
            block = (chunk.users >= data.n_users // 2).astype(int)
            in_block += int(((chunk.items // half) == block[:, None]).sum())
            total += chunk.items.size
        assert in_block / total > 0.95

    def test_parameters_change_after_training(self, data):
        model = MultVAE(MultVAEConfig(hidden_dim=16, latent_dim=4, epochs=1, batch_size=60))
        initial = model.initial_network(data.n_items, OPTIONS.seed).state_dict()
        model.fit(data, OPTIONS)
        after = model.state()
        for name, tensor in initial.items():
            assert not torch.equal(tensor, after[name]), f"{name} did not change"

    def test_fit_leaves_global_rng_untouched(self, data):
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        MultVAE(MultVAEConfig(hidden_dim=8, latent_dim=4, epochs=1)).fit(data, OPTIONS)
        torch.testing.assert_close(torch.rand(3), expected)


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
