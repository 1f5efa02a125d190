"""The shared contract every model passes, plus model-specific checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec_core.data.interactions import Interactions, Vocabulary
from genrec_core.models.base import FitOptions, Recommender, Validation
from genrec_core.models.cfgan import CFGANConfig
from genrec_core.models.cfgan.model import CFGAN
from genrec_core.models.ease import EASEConfig
from genrec_core.models.ease.model import EASE
from genrec_core.models.item_knn import ItemKNNConfig
from genrec_core.models.item_knn.model import ItemKNN
from genrec_core.models.mult_vae import MultVAEConfig
from genrec_core.models.mult_vae.model import MultVAE, mult_vae_loss
from genrec_core.models.popularity.model import Popularity
from genrec_core.models.rec_vae import RecVAEConfig
from genrec_core.models.rec_vae.model import RecVAE
from genrec_core.models.registry import load_model
from genrec_core.models.sansa import SANSAConfig
from genrec_core.models.sansa.model import SANSA
from genrec_core.storage import Storage
from tests.model_contract import OPTIONS, ModelContract, NeuralContract, everyone
from tests.support import two_block_interactions


class TestPopularity(ModelContract):
    @classmethod
    def make_model(cls) -> Recommender:
        return Popularity()

    def test_known_answer(self, data):
        model = Popularity().fit(data, OPTIONS)
        counts = np.asarray(data.matrix.sum(axis=0)).ravel()
        order = torch.argsort(model.score(data.matrix[:1])[0], descending=True, stable=True).numpy()
        assert (np.diff(counts[order]) <= 0).all()


class TestMultVAE(NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return MultVAE(
            MultVAEConfig(
                **{
                    "hidden_dim": 32,
                    "latent_dim": 8,
                    "epochs": 60,
                    "batch_size": 20,
                    "total_anneal_steps": 100,
                    "dropout": 0.2,
                    **overrides,
                }
            )
        )


class TestMultVAESampledSoftmax(NeuralContract):
    """Trained on the sampled softmax (threshold 0: always); lists still over every item."""

    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return TestMultVAE.make_model(sampled_softmax_above=0, negatives=8, **overrides)


SMALL_REC_VAE = {
    "hidden_dim": 32,
    "latent_dim": 8,
    "epochs": 25,
    "batch_size": 20,
    "learning_rate": 3e-3,
    "dropout": 0.2,
}


class TestRecVAE(NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return RecVAE(RecVAEConfig(**{**SMALL_REC_VAE, **overrides}))

    def test_composite_prior_is_the_weighted_mixture(self):
        from genrec_core.models.rec_vae.model import RecVAENet

        net = RecVAENet(5, 4, 3, (0.2, 0.5, 0.3))
        x = torch.tensor([[1.0, 0, 1, 0, 0]])
        z = torch.tensor([[0.3, -1.0, 2.0]])
        mu, logvar = net.prior_encoder.eval()(x, dropout=0.0)
        normal = torch.distributions.Normal
        expected = torch.log(
            0.2 * normal(0.0, 1.0).log_prob(z).exp()
            + 0.5 * normal(mu, torch.exp(0.5 * logvar)).log_prob(z).exp()
            + 0.3 * normal(0.0, float(np.exp(5.0))).log_prob(z).exp()
        )
        torch.testing.assert_close(net.log_prior(x, z), expected.detach(), atol=1e-5, rtol=1e-5)


class TestRecVAESampledSoftmax(NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return RecVAE(RecVAEConfig(**{**SMALL_REC_VAE, "sampled_softmax_above": 0, "negatives": 8, **overrides}))


class LinearExpertChecks:
    """For a model fitted with the expert at l2 10 and weight 3."""

    def test_scores_are_the_network_and_the_expert_combined(self, fitted, data):
        """log_softmax(network scores) + weight * x B, B the EASE of the same data."""
        x = torch.from_numpy((data.matrix.toarray() > 0).astype(np.float32))
        plain = type(fitted)(fitted.config)
        plain.load_state(fitted.config_dict(), fitted.n_items, fitted.net.state_dict())
        ease = EASE(EASEConfig(l2=10.0)).fit(data, OPTIONS)
        expected = torch.log_softmax(plain.score(data.matrix), dim=1) + 3.0 * (x @ ease.weights)
        torch.testing.assert_close(fitted.score(data.matrix), expected, atol=1e-4, rtol=1e-4)


class TestRecVAEWithLinearExpert(LinearExpertChecks, NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return RecVAE(
            RecVAEConfig(
                **{**SMALL_REC_VAE, "linear_expert": True, "expert_l2": 10.0, "expert_weight": 3.0, **overrides}
            )
        )

    def test_weight_and_l2_are_chosen_on_validation(self, data):
        from genrec_core.models.base import Validation

        validation = Validation(data.matrix, data.matrix, k=5)  # any held-out set: only the choice is checked
        model = self.make_model(expert_l2=None, expert_weight=None, epochs=2)
        model.fit(data, FitOptions(seed=1, threads=2, validation=validation))
        from genrec_core.models.neural import EXPERT_L2_GRID, EXPERT_WEIGHT_GRID

        assert model.expert_l2 in EXPERT_L2_GRID and model.expert_weight in EXPERT_WEIGHT_GRID
        half = Interactions(data.matrix[:30].tocsr(), Vocabulary(data.users.ids[:30]), data.items)
        before = model.expert.weights.clone()
        model.refit_expert(half)
        expected = EASE(EASEConfig(l2=model.expert_l2)).fit(half, OPTIONS).weights
        assert not torch.equal(before, model.expert.weights)
        torch.testing.assert_close(model.expert.weights, expected)

    def test_the_one_pass_weight_search_scores_each_weight_as_its_own_evaluation(self, fitted, data):
        from genrec_core.models.neural import EXPERT_WEIGHT_GRID

        held_out = sp.csr_matrix(np.random.default_rng(4).random(data.matrix.shape) < 0.2, dtype=np.float32)
        validation = Validation(data.matrix, held_out, k=5, max_users=25)
        one_pass = fitted._expert_weight_ndcgs(validation, EXPERT_WEIGHT_GRID)
        each = []
        for weight in EXPERT_WEIGHT_GRID:
            fitted.expert_weight = weight
            each.append(fitted._validation_ndcg(validation))
        fitted.expert_weight = 3.0
        assert one_pass == each and len(set(each)) > 1  # the weights do change the lists


class TestRecVAEWithSANSAExpert(NeuralContract):
    """Above `expert_max_items` the expert is SANSA: EASE's weights as sparse factors, no items^2 matrix."""

    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        settings = {"linear_expert": None, "expert_max_items": 10, "expert_l2": 10.0, "expert_weight": 3.0}
        return RecVAE(RecVAEConfig(**{**SMALL_REC_VAE, **settings, **overrides}))

    def test_scores_are_the_network_and_sansa_combined(self, fitted, data):
        assert isinstance(fitted.expert, SANSA)
        plain = type(fitted)(fitted.config)
        plain.load_state(fitted.config_dict(), fitted.n_items, fitted.net.state_dict())
        sansa = SANSA(SANSAConfig(l2=10.0)).fit(data, OPTIONS)
        expected = torch.log_softmax(plain.score(data.matrix), dim=1) + 3.0 * sansa.score(data.matrix)
        torch.testing.assert_close(fitted.score(data.matrix), expected, atol=1e-4, rtol=1e-4)

    def test_sansa_keeps_the_default_l2_and_the_weight_is_chosen(self, data, monkeypatch):
        from genrec_core.models.neural import DEFAULT_EXPERT_L2, EXPERT_WEIGHT_GRID

        fits = []
        original = SANSA._fit

        def counted(model, *args):
            fits.append(model.config.l2)
            return original(model, *args)

        monkeypatch.setattr(SANSA, "_fit", counted)
        model = self.make_model(expert_l2=None, expert_weight=None, epochs=2)
        model.fit(data, FitOptions(seed=1, threads=2, validation=Validation(data.matrix, data.matrix, k=5)))
        assert fits == [DEFAULT_EXPERT_L2] and model.expert_l2 == DEFAULT_EXPERT_L2
        assert model.expert_weight in EXPERT_WEIGHT_GRID


SMALL_CFGAN = {
    "mode": "user",
    "generator_hidden": 32,
    "discriminator_hidden": 16,
    "epochs": 150,
    "min_epochs": 0,
    "generator_learning_rate": 3e-3,
    "discriminator_learning_rate": 1e-3,
    "generator_batch_size": 20,
    "discriminator_batch_size": 20,
    "batch_size": 20,
    "zr_weight": 0.1,
    "finetune_epochs": 40,
    "linear_expert": False,
}


class TestCFGAN(NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return CFGAN(CFGANConfig(**{**SMALL_CFGAN, **overrides}))


class TestCFGANItemBased(NeuralContract):
    """The authors' MovieLens mode: CFGAN over the items' columns; a user's scores are G's outputs at its index."""

    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return CFGAN(CFGANConfig(**{**SMALL_CFGAN, "mode": "item", "epochs": 100, **overrides}))

    def test_scores_are_the_generator_outputs_for_each_item_column(self, fitted, data):
        columns = torch.from_numpy((data.matrix.toarray() > 0).astype(np.float32)).T
        with torch.no_grad():
            expected = fitted.net.generate(columns).T
        torch.testing.assert_close(fitted.score(data.matrix, everyone(data)), expected, atol=1e-5, rtol=1e-5)

    def test_needs_the_users_and_gives_a_new_user_the_mean_users_scores(self, fitted, data):
        with pytest.raises(ValueError, match="user indices"):
            fitted.score(data.matrix[:3])
        out = fitted.net.generator[-1]
        new_user = fitted.score(data.matrix[:1], np.array([data.n_users + 5]))[0]
        expected = fitted.net.item_hidden @ out.weight.mean(dim=0) + out.bias.mean()
        torch.testing.assert_close(new_user, expected.detach())

    def test_scores_from_the_item_columns_it_is_given(self, data):
        """Fitted on part of the history, then given all of it (the bench's protocol): its scores are G's
        outputs for the new columns, with the fitted weights."""
        part = data.matrix.copy()
        part.data[::3] = 0
        part.eliminate_zeros()
        model = self.make_model(epochs=3).fit(Interactions(part, data.users, data.items), OPTIONS)
        model.use_item_columns(data)
        columns = torch.from_numpy((data.matrix.toarray() > 0).astype(np.float32)).T
        with torch.no_grad():
            expected = model.net.generate(columns).T
        torch.testing.assert_close(model.score(data.matrix, everyone(data)), expected, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="fitted on"):
            model.use_item_columns(Interactions(data.matrix[:10].tocsr(), Vocabulary(data.users.ids[:10]), data.items))

    def test_fine_tunes_onto_new_users(self, fitted, data):
        """Yesterday's model knew 50 of the 60 users; after fine-tuning on today's, the 10 new users (of block 1)
        have scores of their own, led by block 1's items, where before they had the mean user's."""
        yesterday = Interactions(data.matrix[:50].tocsr(), Vocabulary(data.users.ids[:50]), data.items)
        previous = self.make_model().fit(yesterday, OPTIONS)
        new_users = np.arange(50, 60)
        before = previous.score(data.matrix[50:], new_users)
        assert torch.allclose(before, before[:1].expand_as(before))  # all the mean user's
        tuned = self.make_model().fit(data, FitOptions(seed=1, threads=2, warm_start=previous))
        after = tuned.score(data.matrix[50:], new_users)
        half = data.n_items // 2
        assert (after[:, half:].mean(dim=1) > after[:, :half].mean(dim=1)).all()

    def test_refuses_more_users_than_its_limit(self, data):
        with pytest.raises(ValueError, match="item_mode_max_users"):
            self.make_model(item_mode_max_users=10).fit(data, OPTIONS)


class TestCFGANWithLinearExpert(LinearExpertChecks, NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return CFGAN(
            CFGANConfig(**{**SMALL_CFGAN, "linear_expert": True, "expert_l2": 10.0, "expert_weight": 3.0, **overrides})
        )


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
    config = MultVAEConfig(hidden_dim=16, latent_dim=4, epochs=2, batch_size=20, linear_expert=False)
    model = MultVAE(config).fit(data, OPTIONS)
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
        data = Interactions(
            sp.csr_matrix(x.astype(np.float32)),
            Vocabulary(np.array(list("abcd"), dtype=object)),
            Vocabulary(np.array(list("wxyz"), dtype=object)),
        )
        model = EASE(EASEConfig(l2=l2)).fit(data, OPTIONS)
        np.testing.assert_allclose(model.weights.numpy(), b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.score(data.matrix).numpy(), x @ b, rtol=1e-5, atol=1e-5)

    def test_refuses_a_catalogue_too_large(self, data):
        with pytest.raises(ValueError, match="max_items"):
            EASE(EASEConfig(max_items=5)).fit(data, OPTIONS)


def test_item_knn_in_small_blocks_and_scored_sparse_equals_the_one_block_dense_path(monkeypatch):
    """The memory bounds change how the work is cut, never the result."""
    import genrec_core.models.item_knn.model as knn

    data = two_block_interactions()
    one_block = ItemKNN(ItemKNNConfig(neighbors=5, shrink=1.0)).fit(data, OPTIONS)
    dense_scores = one_block.score(data.matrix)
    x = data.binary().tocsc()
    monkeypatch.setattr(knn, "BLOCK_ENTRIES", 40)
    monkeypatch.setattr(knn, "DENSE_SIMILARITY_BYTES", 0)
    blocks = knn.column_blocks(x, 40)
    assert len(blocks) > 3 and blocks[0][0] == 0 and blocks[-1][1] == data.n_items
    assert all(stop == start for (_, stop), (start, _) in zip(blocks, blocks[1:]))  # every column, once
    blocked = ItemKNN(ItemKNNConfig(neighbors=5, shrink=1.0)).fit(data, OPTIONS)
    assert (blocked.similarity != one_block.similarity).nnz == 0
    torch.testing.assert_close(blocked.score(data.matrix), dense_scores)


class TestSANSA(ModelContract):
    @classmethod
    def make_model(cls) -> Recommender:
        return SANSA(SANSAConfig(l2=10.0, weights_per_item=6))

    def test_with_every_weight_kept_it_is_ease(self, data):
        """At density 1 nothing is pruned: with L's inverse refined, the factors multiply to EASE's closed form."""
        config = SANSAConfig(l2=10.0, weights_per_item=data.n_items, scans=1, finetune_steps=5)
        sansa = SANSA(config).fit(data, OPTIONS)
        ease = EASE(EASEConfig(l2=10.0)).fit(data, OPTIONS)
        w1, w2 = sansa.factors
        np.testing.assert_allclose((w1 @ w2).toarray() + np.eye(data.n_items), ease.weights.numpy(), atol=2e-3)
        np.testing.assert_allclose(sansa.score(data.matrix).numpy(), ease.score(data.matrix).numpy(), atol=5e-3)

    def test_without_sweeps_the_inverse_is_sansas_first_schultz_step(self):
        from sansa.core._ops._inverse_ops import s1

        from genrec_core.models.sansa.model import _SchultzStep

        lower = sp.csc_matrix(np.array([[1.0, 0, 0], [0.2, 1, 0], [-0.1, 0.3, 1]], dtype=np.float32))
        np.testing.assert_array_equal(_SchultzStep().invert(lower).toarray(), s1(lower).toarray())
        np.testing.assert_allclose((lower @ _SchultzStep().invert(lower)).toarray(), np.eye(3), atol=0.1)

    def test_auto_factorises_incompletely_at_low_density_as_the_authors_advise(self):
        config = SANSAConfig(weights_per_item=200)
        assert config.factorizer_for(3_999) == "cholmod" and config.factorizer_for(4_000) == "icf"
        assert SANSAConfig(factorizer="cholmod").factorizer_for(10**6) == "cholmod"

    def test_the_factors_keep_about_weights_per_item_each(self, data):
        model = SANSA(SANSAConfig(l2=10.0, weights_per_item=4)).fit(data, OPTIONS)
        assert model.stored_weights <= 2 * 4 * data.n_items * 1.1
        assert model.stored_weights < 2 * data.n_items**2 / 2

    def test_scores_split_over_threads_equal_one_thread(self, fitted, data):
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            alone = fitted.score(data.matrix)
            torch.set_num_threads(3)
            split = fitted.score(data.matrix)
        finally:
            torch.set_num_threads(before)
        w1, w2 = fitted.factors
        x = (data.matrix > 0).astype(np.float32)
        torch.testing.assert_close(alone, torch.from_numpy((x @ w1 @ w2 + x).toarray()))
        assert torch.equal(split, alone) and fitted.score(data.matrix[:0]).shape == (0, data.n_items)

    def test_importing_sansa_leaves_the_root_logger_alone(self):
        import logging
        import subprocess
        import sys

        code = (
            "import logging; from genrec_core.models.sansa.model import _import_sansa; _import_sansa(); "
            "print(len(logging.getLogger().handlers), logging.getLogger().level)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.split() == ["0", str(logging.WARNING)]


class TestSANSAIncomplete(ModelContract):
    """The incomplete factorisation (what `auto` picks on large catalogues) passes the same contract."""

    @classmethod
    def make_model(cls) -> Recommender:
        return SANSA(SANSAConfig(l2=10.0, weights_per_item=6, factorizer="icf"))

    def test_l2_means_eases_l2_though_sansa_rescales_the_gram_matrix(self, data):
        """EASE's weights are unchanged when every user is counted twice and l2 doubled; before ICF sansa rescales
        each item by the square root of its Gram row's norm, so the fit divides l2 by the mean item count to keep
        that property."""
        twice = Interactions(
            sp.vstack([data.matrix, data.matrix]).tocsr(),
            Vocabulary(np.array([f"u{j}" for j in range(2 * data.n_users)], dtype=object)),
            data.items,
        )
        once = SANSA(SANSAConfig(l2=10.0, weights_per_item=6, factorizer="icf")).fit(data, OPTIONS).factors
        doubled = SANSA(SANSAConfig(l2=20.0, weights_per_item=6, factorizer="icf")).fit(twice, OPTIONS).factors
        for a, b in zip(once, doubled):
            np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-4, atol=1e-6)

    def test_items_without_events_get_zero_weights_and_leave_the_rest_unchanged(self, data):
        """sansa's incomplete factorisation mixes other columns into an item with no events (and scans the whole
        matrix for it); the fit leaves such items out, so the others' weights equal a fit without them."""
        spaced = np.arange(data.n_items) * 2  # every other item has no event
        x = data.matrix.tocoo()
        wide = Interactions(
            sp.csr_matrix((x.data, (x.row, spaced[x.col])), shape=(data.n_users, 2 * data.n_items)),
            data.users,
            Vocabulary(np.array([f"i{j}" for j in range(2 * data.n_items)], dtype=object)),
        )
        config = SANSAConfig(l2=10.0, weights_per_item=6, factorizer="icf")
        narrow_w1, narrow_w2 = SANSA(config).fit(data, OPTIONS).factors
        wide_w1, wide_w2 = SANSA(config).fit(wide, OPTIONS).factors
        for narrow, w in ((narrow_w1, wide_w1), (narrow_w2, wide_w2)):
            np.testing.assert_allclose(w[spaced][:, spaced].toarray(), narrow.toarray(), rtol=1e-5, atol=1e-6)
            empty = np.setdiff1d(np.arange(2 * data.n_items), spaced)
            assert w[empty].nnz == 0 and w[:, empty].nnz == 0


class TestItemKNN(ModelContract):
    @classmethod
    def make_model(cls) -> Recommender:
        return ItemKNN(ItemKNNConfig(neighbors=5, shrink=1.0))

    def test_similarity_is_shrunk_cosine_with_k_neighbors(self):
        x = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float32)
        data = Interactions(
            sp.csr_matrix(x),
            Vocabulary(np.array(list("abc"), dtype=object)),
            Vocabulary(np.array(list("xyz"), dtype=object)),
        )
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
    from genrec_core.models.base import Validation
    from genrec_core.ranking.metrics import evaluate

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
    # no linear expert: the restored network alone must score what its best epoch scored
    config = MultVAEConfig(
        hidden_dim=16, latent_dim=4, epochs=40, batch_size=20, total_anneal_steps=50, linear_expert=False
    )
    model = MultVAE(config)
    model.fit(Interactions(fit, data.users, data.items), FitOptions(seed=1, threads=2, validation=validation))
    log = model.training_log
    assert all("val_ndcg" in entry for entry in log)
    best = max(entry["val_ndcg"] for entry in log)
    assert model.best_epoch == next(e["epoch"] for e in log if e["val_ndcg"] == best)
    assert len(log) == 40 or len(log) - model.best_epoch == 3  # stopped after `patience` epochs without gain
    assert evaluate(model, fit, valid, 5)["ndcg@5"] == pytest.approx(best)


def test_validation_judges_a_fixed_sample_of_at_most_max_users():
    rng = np.random.default_rng(3)
    targets = sp.csr_matrix((rng.random((40, 30)) < 0.2).astype(np.float32))
    targets[5] = 0  # a user with no targets is never judged
    targets.eliminate_zeros()
    history = sp.csr_matrix((40, 30), dtype=np.float32)
    with_targets = set(np.flatnonzero(np.diff(targets.indptr) > 0))
    assert Validation(history, targets).judged_targets() is targets
    assert Validation(history, targets, max_users=len(with_targets)).judged_targets() is targets
    judged = Validation(history, targets, max_users=10).judged_targets()
    users = np.flatnonzero(np.diff(judged.indptr) > 0)
    assert len(users) == 10 and set(users) <= with_targets
    assert (judged[users] != targets[users]).nnz == 0  # a judged user keeps every target
    again = Validation(history, targets, max_users=10).judged_targets()
    assert (again != judged).nnz == 0


@pytest.mark.parametrize("model_class, config_class", [(MultVAE, MultVAEConfig), (RecVAE, RecVAEConfig)])
def test_a_vae_is_narrow_on_a_large_catalogue_and_a_fine_tune_keeps_its_width(model_class, config_class, tmp_path):
    """Above `narrow_above` items a fresh fit is `narrow_hidden_dim` wide, and its config says so; a fine-tune
    onto a catalogue that grew past the limit keeps the base's width (its weights carry over)."""
    from tests.model_contract import reshaped

    def width(model: Recommender) -> int:
        return int(model.net.item_parameters()[0].shape[1])  # the first layer: one row per item

    data = two_block_interactions()
    settings = {"hidden_dim": 16, "narrow_hidden_dim": 8, "latent_dim": 4, "epochs": 1, "linear_expert": False}
    wide = model_class(config_class(**settings, narrow_above=data.n_items)).fit(data, OPTIONS)
    narrow = model_class(config_class(**settings, narrow_above=data.n_items - 1)).fit(data, OPTIONS)
    assert (width(wide), width(narrow)) == (16, 8) and narrow.config.hidden_dim == 8
    uri = (tmp_path / "narrow").as_uri()
    narrow.save(uri, Storage())
    assert width(load_model(uri, Storage())) == 8

    yesterday = reshaped(data, np.arange(data.n_items - 2))
    base = model_class(config_class(**settings, narrow_above=data.n_items - 2)).fit(yesterday, OPTIONS)
    tuned = model_class(base.config).fit(data, FitOptions(seed=1, threads=2, warm_start=base))
    assert width(base) == width(tuned) == 16 and tuned.warm_started
