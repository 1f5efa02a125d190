"""Item-row parameters: the embedding-bag first layer, sparse gradients, and their optimizers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from genrec_core.models.item_rows import ItemInput, group, item_rows, row_sparse_optimizers
from genrec_core.models.mult_vae import MultVAEConfig
from genrec_core.models.mult_vae.model import MultVAE, MultVAENet
from genrec_core.models.rec_vae import RecVAEConfig
from genrec_core.models.rec_vae.model import RecVAE
from genrec_core.models.sampled_softmax import ItemSampler, multinomial_nll
from genrec_core.models.torch_utils import binary_rows_tensor, sparse_normalize_dropout


def _batch(n_rows: int = 6, n_items: int = 40, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_rows, n_items)) < 0.15).astype(np.float32)
    dense[2] = 0.0  # a row with no history: an empty bag
    return binary_rows_tensor(sp.csr_matrix(dense), "cpu")


def test_sparse_input_equals_the_dense_product_and_its_gradient_touches_only_used_rows():
    torch.manual_seed(0)
    layer = ItemInput(40, 5)
    x = sparse_normalize_dropout(_batch(), 0.0, training=False)
    dense = x.to_dense()
    torch.testing.assert_close(layer(x), dense @ layer.item_weight.detach() + layer.bias.detach())
    torch.testing.assert_close(layer.score_sparse(x), layer(dense), atol=1e-6, rtol=1e-6)

    layer(x).pow(2).sum().backward()
    grad = layer.item_weight.grad
    assert grad is not None and grad.is_sparse
    touched = set(grad.coalesce().indices()[0].tolist())
    assert touched == set(x.indices()[1].tolist())


def test_item_rows_lookup_has_a_sparse_gradient_on_the_looked_up_rows():
    table = nn.Parameter(torch.randn(30, 4))
    item_rows(table, torch.tensor([3, 7, 3])).sum().backward()
    assert table.grad is not None and table.grad.is_sparse
    grad = table.grad.coalesce().to_dense()
    assert grad[3].tolist() == [2.0] * 4 and grad[7].tolist() == [1.0] * 4
    assert torch.count_nonzero(grad.sum(dim=1)) == 2


def test_sampled_update_moves_only_the_rows_the_batch_used():
    """One SparseAdam step after a sampled-softmax loss: rows of neither the batch nor the draw stay put."""
    torch.manual_seed(1)
    n_items = 200
    net = MultVAENet(n_items, hidden_dim=8, latent_dim=3, dropout=0.0)
    optimizers = row_sparse_optimizers({"adam": net.parameters()}, net.item_parameters(), 1e-2)
    assert set(optimizers) == {"adam", "adam_items"}
    assert isinstance(optimizers["adam_items"], torch.optim.SparseAdam)
    counts = np.zeros(n_items)
    counts[:10] = 1e6  # the proposal draws (almost surely) only items 0-9
    sampler = ItemSampler(counts, "popularity", "cpu")
    x = _batch(n_rows=4, n_items=n_items, seed=3)
    before = [p.detach().clone() for p in net.item_parameters()]
    mu, _ = net.encode(x)
    multinomial_nll(net.decoder_state(mu), net.decoder_out.weight, net.decoder_out.bias, x, sampler, 16).backward()
    for optimizer in group(optimizers, "adam"):
        optimizer.step()
    used = set(x.coalesce().indices()[1].tolist())
    encoder_moved = set(torch.nonzero((net.encoder.item_weight - before[0]).abs().sum(dim=1)).flatten().tolist())
    decoder_moved = set(torch.nonzero((net.decoder_out.weight - before[1]).abs().sum(dim=1)).flatten().tolist())
    assert encoder_moved == used
    assert used <= decoder_moved <= used | set(range(10))


def test_without_item_rows_everything_gets_one_adam():
    net = MultVAENet(20, 6, 2, 0.0)
    optimizers = row_sparse_optimizers({"adam": net.parameters()}, [], 1e-3, weight_decay=0.1)
    assert list(optimizers) == ["adam"] and isinstance(optimizers["adam"], torch.optim.Adam)
    assert optimizers["adam"].defaults["weight_decay"] == 0.1


@pytest.mark.parametrize("model_class", [MultVAE, RecVAE])
def test_a_first_layer_saved_as_linear_weight_still_loads(model_class):
    """0.5 saved the first layer as nn.Linear's `weight` [width, items]; it loads transposed, same scores."""
    config = (MultVAEConfig if model_class is MultVAE else RecVAEConfig)(hidden_dim=6, latent_dim=3)
    model = model_class(config)
    model.load_state(config.model_dump(), 12, model._build(12).state_dict())
    state = model.net.state_dict()
    legacy = {}
    for key, value in state.items():
        if key.endswith("item_weight"):
            legacy[key.removesuffix("item_weight") + "weight"] = value.t().contiguous()
        else:
            legacy[key] = value
    assert legacy.keys() != state.keys()
    reloaded = model_class(config)
    reloaded.load_state(config.model_dump(), 12, legacy)
    history = sp.csr_matrix(np.eye(3, 12, dtype=np.float32))
    torch.testing.assert_close(reloaded.score(history), model.score(history))
