"""The sequential models (SASRec, the transitions baseline): the shared contract on the toy's time order,
plus checks that they read order, which a bag model cannot."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from genrec_core.data.interactions import Interactions, Vocabulary
from genrec_core.data.sequences import (
    PAD,
    check_places,
    from_lists,
    last_items,
    ranks_in_rows,
    transitions,
    without_leading_padding,
)
from genrec_core.models.base import FitOptions, Recommender, Validation
from genrec_core.models.ease.model import EASE
from genrec_core.models.sasrec import SASRecConfig
from genrec_core.models.sasrec.model import SASRec
from genrec_core.models.transitions import TransitionsConfig
from genrec_core.models.transitions.model import Transitions
from genrec_core.ranking.metrics import evaluate
from tests.model_contract import OPTIONS, ModelContract, NeuralContract

SMALL_SASREC = {"max_length": 8, "hidden_dim": 16, "dropout": 0.1, "epochs": 40, "batch_size": 16}
SMALL_SASREC["learning_rate"] = 3e-3


def cycle_data(n_users: int = 90, n_items: int = 15, length: int = 6) -> tuple[Interactions, sp.csr_matrix]:
    """Each user walks the catalogue's cycle i -> i+1 (mod n) from a random start: (the first `length`
    steps as histories, the step after them as the held-out next item). Every item is as popular as any other
    and every user's set of items is a run of the cycle, so only the order tells which end is the latest."""
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n_items, n_users)
    walks = [[(s + t) % n_items for t in range(length + 1)] for s in starts]
    order = from_lists([w[:-1] for w in walks], n_items)
    matrix = sp.csr_matrix((np.ones(order.nnz, np.float32), order.indices, order.indptr), shape=order.shape)
    users = Vocabulary(np.array([f"u{u}" for u in range(n_users)], dtype=object))
    items = Vocabulary(np.array([f"i{i}" for i in range(n_items)], dtype=object))
    nxt = sp.csr_matrix(
        (np.ones(n_users, np.float32), ([w[-1] for w in walks], np.arange(n_users))), shape=(n_items, n_users)
    ).T.tocsr()
    return Interactions(matrix, users, items, order), nxt


def hit_rate(model: Recommender, data: Interactions, targets: sp.csr_matrix, k: int = 1) -> float:
    return float(evaluate(model, model.history_of(data), targets, k)[f"recall@{k}"])


# ---- the ordered-history helpers -------------------------------------------------------------------


def test_places_rank_by_time_then_item_and_the_window_keeps_the_latest_right_aligned():
    indptr = np.array([0, 3, 3, 5])
    columns = np.array([4, 1, 2, 0, 3])
    times = np.array([30, 10, 10, 7, 5])  # row 0: items 1 and 2 tie at 10 -> item 1 first
    ranks = ranks_in_rows(indptr, times, columns)
    assert ranks.tolist() == [3, 1, 2, 2, 1]
    order = sp.csr_matrix((ranks, columns, indptr), shape=(3, 5))
    assert last_items(order, 2).tolist() == [[2, 4], [PAD, PAD], [3, 0]]
    assert last_items(order, 4).tolist() == [[PAD, 1, 2, 4], [PAD] * 4, [PAD, PAD, 3, 0]]
    assert [a.tolist() for a in transitions(order)] == [[1, 2, 3], [2, 4, 0]]


def test_a_weight_matrix_is_refused_where_an_order_is_needed():
    data, _ = cycle_data()
    check_places(data.order)
    with pytest.raises(ValueError, match="row 0 does not hold places 1..n"):
        check_places(data.matrix)
    model = Transitions().fit(data, OPTIONS)
    with pytest.raises(ValueError, match="weight matrix"):
        model.score(data.matrix)


def test_data_without_order_is_refused_with_the_reason():
    data, _ = cycle_data()
    bag = Interactions(data.matrix, data.users, data.items)
    with pytest.raises(Exception, match="no time order"):
        Transitions().fit(bag, OPTIONS)


# ---- the transitions baseline ----------------------------------------------------------------------


class TestTransitions(ModelContract):
    @classmethod
    def make_model(cls) -> Recommender:
        return Transitions(TransitionsConfig(window=2))

    def test_known_answer_next_item_of_the_cycle(self):
        data, nxt = cycle_data()
        assert hit_rate(Transitions().fit(data, OPTIONS), data, nxt) == 1.0

    def test_scores_are_transition_shares_then_popularity(self):
        # 0 -> 1 twice, 0 -> 2 once; item 3 is the most popular and never follows 0
        order = from_lists([[0, 1], [0, 1], [0, 2], [3], [3], [3], [3]], 4)
        data = Interactions(
            sp.csr_matrix((np.ones(order.nnz, np.float32), order.indices, order.indptr), shape=order.shape),
            Vocabulary(np.array([f"u{u}" for u in range(7)], dtype=object)),
            Vocabulary(np.array(["a", "b", "c", "d"], dtype=object)),
            order,
        )
        model = Transitions(TransitionsConfig(backoff=0.01)).fit(data, OPTIONS)
        scores = model.score(from_lists([[0]], 4))[0]
        popularity = np.array([3, 2, 1, 4]) / 4
        torch.testing.assert_close(scores, torch.tensor([0, 2 / 3, 1 / 3, 0]) + 0.01 * torch.tensor(popularity).float())


# ---- SASRec ----------------------------------------------------------------------------------------


class TestSASRec(NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return SASRec(SASRecConfig(**{**SMALL_SASREC, **overrides}))

    def test_learns_the_next_item_of_the_cycle_which_a_bag_model_cannot(self):
        data, nxt = cycle_data()
        sasrec = self.make_model().fit(data, OPTIONS)
        assert hit_rate(sasrec, data, nxt) > 0.9
        # EASE sees each user's run of the cycle as a set: both of its ends look alike
        assert hit_rate(EASE().fit(data, OPTIONS), data, nxt) < 0.7

    def test_scores_come_from_the_latest_max_length_items_only(self, fitted, data):
        long = from_lists([list(range(12))], data.n_items)  # 12 items; the model reads the latest 8
        latest = from_lists([list(range(4, 12))], data.n_items)
        torch.testing.assert_close(fitted.score(long), fitted.score(latest))
        assert not torch.allclose(fitted.score(long), fitted.score(from_lists([list(range(3, 11))], data.n_items)))

    def test_validation_needs_the_order(self, data):
        validation = Validation(data.matrix, data.matrix, k=5)  # no order given
        with pytest.raises(ValueError, match="no time order"):
            self.make_model(epochs=1).fit(data, FitOptions(seed=1, validation=validation))


class TestSASRecSampledSoftmax(NeuralContract):
    @classmethod
    def make_model(cls, **overrides) -> Recommender:
        return SASRec(SASRecConfig(**{**SMALL_SASREC, "loss": "sampled_softmax", "negatives": 8, **overrides}))

    def test_learns_the_next_item_of_the_cycle(self):
        data, nxt = cycle_data()
        assert hit_rate(self.make_model(epochs=60).fit(data, OPTIONS), data, nxt) > 0.9


def test_the_softmax_is_sampled_above_the_catalogue_threshold():
    data, _ = cycle_data()
    below = SASRec(SASRecConfig(**SMALL_SASREC, sampled_softmax_above=data.n_items))
    above = SASRec(SASRecConfig(**SMALL_SASREC, sampled_softmax_above=data.n_items - 1, negatives=8))
    assert below.item_sampler(data) is None
    sampler = above.item_sampler(data)
    assert sampler is not None and sampler.n_items == data.n_items and sampler.proposal == "popularity"


def test_leading_padding_changes_nothing_but_the_cost():
    data, _ = cycle_data()
    model = SASRec(SASRecConfig(**{**SMALL_SASREC, "max_length": 30, "epochs": 3})).fit(data, OPTIONS)
    short = from_lists([[1, 2, 3]], data.n_items)
    long = from_lists([list(range(14))], data.n_items)
    together = model.score(sp.vstack([short, long]).tocsr())  # the short row is padded to the long one's length
    torch.testing.assert_close(together[:1], model.score(short), atol=1e-5, rtol=1e-5)
    window = last_items(short, 6)
    assert without_leading_padding(window).shape == (1, 3) and without_leading_padding(window, keep=5).shape == (1, 5)
