"""The sampled softmax's estimate of the full one, and when the models switch to it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from genrec_core.models.mult_vae import MultVAEConfig
from genrec_core.models.mult_vae.model import MultVAE
from genrec_core.models.rec_vae import RecVAEConfig
from genrec_core.models.rec_vae.model import RecVAE
from genrec_core.models.sampled_softmax import ItemSampler, log_partition, multinomial_nll, next_item_loss
from genrec_core.models.torch_utils import sparse_normalize_dropout
from tests.support import two_block_interactions

N_ITEMS = 30


def _logits(rows: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, N_ITEMS, generator=torch.Generator().manual_seed(seed)) * 2.0


def _positives() -> torch.Tensor:
    x = torch.zeros(3, N_ITEMS)
    x[0, [0, 5]] = 1.0
    x[1, [7]] = 1.0
    x[2, [1, 2, 29]] = 1.0
    return x


@pytest.mark.parametrize("proposal", ["popularity", "uniform"])
def test_the_partition_estimate_is_unbiased(proposal):
    """The mean of exp(log Z estimate) over many draws is the exact sum over all items."""
    counts = np.arange(N_ITEMS, dtype=float) ** 2  # a skewed popularity
    sampler = ItemSampler(counts, proposal, "cpu")
    logits, x = _logits(), _positives().bool()
    exact = torch.logsumexp(logits, dim=1).exp()
    torch.manual_seed(0)
    estimates = []
    for _ in range(4000):
        drawn = sampler.draw(10)
        hits = x[:, drawn]
        estimates.append(log_partition(logits, x, logits[:, drawn], sampler.log_q[drawn], hits).exp())
    mean = torch.stack(estimates).mean(dim=0)
    torch.testing.assert_close(mean, exact, rtol=0.05, atol=0.0)


def test_drawn_positives_are_not_counted_twice():
    """When every draw is a positive of the row, the estimate is the exact sum over the positives."""
    counts = np.zeros(N_ITEMS)
    counts[5] = 1e12  # the proposal is (almost) all on item 5
    sampler = ItemSampler(counts, "popularity", "cpu")
    logits, x = _logits(), _positives().bool()
    torch.manual_seed(0)
    drawn = sampler.draw(16)
    assert (drawn == 5).all()
    got = log_partition(logits[:1], x[:1], logits[:1, drawn], sampler.log_q[drawn], x[:1, drawn])
    torch.testing.assert_close(got, torch.logsumexp(logits[0, [0, 5]], dim=0, keepdim=True))


def test_the_multinomial_likelihood_approaches_the_full_one_with_many_draws():
    hidden = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    weight = torch.randn(N_ITEMS, 4, generator=torch.Generator().manual_seed(2))
    bias = torch.randn(N_ITEMS, generator=torch.Generator().manual_seed(3))
    x = _positives()
    full = -(F.log_softmax(hidden @ weight.T + bias, dim=1) * x).sum(dim=1).mean()
    sampler = ItemSampler(np.ones(N_ITEMS), "uniform", "cpu")
    torch.manual_seed(0)
    sampled = multinomial_nll(hidden, weight, bias, x.to_sparse(), sampler, negatives=200_000)
    assert math.isclose(float(sampled), float(full), rel_tol=0.01)


def test_the_next_item_loss_approaches_the_full_cross_entropy_with_many_draws():
    hidden = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    table = torch.randn(N_ITEMS, 4, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([0, 3, 3, 17, 29])
    sampler = ItemSampler(np.arange(N_ITEMS, dtype=float), "popularity", "cpu")
    torch.manual_seed(0)
    sampled = next_item_loss(hidden, table, target, sampler, negatives=200_000)
    assert math.isclose(float(sampled), float(F.cross_entropy(hidden @ table.T, target)), rel_tol=0.01)


def test_sparse_input_normalisation_matches_the_dense_one():
    x = _positives()
    dense = F.normalize(x, dim=1)
    torch.testing.assert_close(sparse_normalize_dropout(x.to_sparse(), 0.5, training=False).to_dense(), dense)
    dropped = sparse_normalize_dropout(x.to_sparse(), 0.5, training=True).to_dense()
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], 2.0 * dense[kept])  # kept entries scaled by 1 / (1 - p)


@pytest.mark.parametrize("bad", [np.array([]), np.array([1.0, -1.0]), np.ones((2, 2))])
def test_a_sampler_refuses_counts_it_cannot_use(bad):
    with pytest.raises(ValueError, match="item_counts"):
        ItemSampler(bad, "popularity", "cpu")


def test_an_unknown_proposal_is_refused_by_the_config():
    with pytest.raises(ValueError, match="proposal"):
        MultVAEConfig(proposal="zipf")


@pytest.mark.parametrize("model_class", [MultVAE, RecVAE])
def test_the_catalogue_size_switches_the_softmax(model_class):
    """Full softmax at or below `sampled_softmax_above`, sampled above it."""
    data = two_block_interactions()  # 24 items
    config_class = MultVAEConfig if model_class is MultVAE else RecVAEConfig
    at_threshold = model_class(config_class(sampled_softmax_above=data.n_items))
    below_threshold = model_class(config_class(sampled_softmax_above=data.n_items - 1, proposal="uniform"))
    assert at_threshold.item_sampler(data) is None
    sampler = below_threshold.item_sampler(data)
    assert sampler is not None and sampler.n_items == data.n_items and sampler.proposal == "uniform"
