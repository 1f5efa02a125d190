"""Parameters with one row per item, and updates that touch only the rows a batch used.

At a large catalogue the VAEs' item-sized weights (the encoder's first layer, the decoder's
output layer) dominate a sampled-softmax update: the batch reads a few thousand item rows,
but a dense gradient and a dense Adam step walk all of them. Stored as [items, width] rows,
the first layer of a sparse batch is an embedding bag and the decoder's rows are an embedding
lookup, both with sparse gradients, and `torch.optim.SparseAdam` updates only those rows
(its moments are lazy: an untouched row keeps its moments until it is touched again).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class ItemInput(nn.Module):
    """The first layer over a history: `x @ item_weight + bias`, one weight row per item.

    `nn.Linear(n_items, width)` with its weight transposed, initialised as that layer is
    (uniform within 1/sqrt(items)); 0.5 saved that layer's `weight` [width, items], which loads too.
    """

    def __init__(self, n_items: int, width: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_items)
        self.item_weight = nn.Parameter(torch.empty(n_items, width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(width).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense [rows, items], or a coalesced sparse COO batch (then the weight's gradient is sparse)."""
        if not x.is_sparse:
            return x @ self.item_weight + self.bias
        rows, cols = x.indices()
        counts = torch.bincount(rows, minlength=x.shape[0])
        offsets = torch.cumsum(counts, 0) - counts
        bag = F.embedding_bag(cols, self.item_weight, offsets, mode="sum", per_sample_weights=x.values(), sparse=True)
        return bag + self.bias

    def score_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """The same product for scoring (no gradients wanted): a sparse @ dense product."""
        return torch.sparse.mm(x, self.item_weight) + self.bias

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        legacy = prefix + "weight"  # nn.Linear's [width, items], as 0.5 saved the first layer
        if legacy in state_dict and prefix + "item_weight" not in state_dict:
            state_dict[prefix + "item_weight"] = state_dict.pop(legacy).t().contiguous()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def item_rows(table: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """`table[items]` with a sparse gradient: only the looked-up rows of `table` receive one."""
    return F.embedding(items, table, sparse=True)


def row_sparse_optimizers(
    parameters: Mapping[str, Iterable[torch.Tensor]],
    item_parameters: Iterable[torch.Tensor],
    learning_rate: float,
    weight_decay: float = 0.0,
) -> dict[str, torch.optim.Optimizer]:
    """For each named group, Adam over its dense parameters and SparseAdam ("<name>_items") over its
    item-row parameters (those in `item_parameters`). SparseAdam has no weight decay: with a decay set,
    it applies to the dense parameters only (the item rows are regularised by the sampled loss alone)."""
    rows = {id(p) for p in item_parameters}
    optimizers: dict[str, torch.optim.Optimizer] = {}
    for name, params in parameters.items():
        params = list(params)
        dense = [p for p in params if id(p) not in rows and p.requires_grad]
        sparse = [p for p in params if id(p) in rows]
        if dense:
            optimizers[name] = torch.optim.Adam(dense, lr=learning_rate, weight_decay=weight_decay)
        if sparse:
            optimizers[f"{name}_items"] = torch.optim.SparseAdam(sparse, lr=learning_rate)
    return optimizers


def group(optimizers: Mapping[str, torch.optim.Optimizer], name: str) -> list[torch.optim.Optimizer]:
    """The optimizers `row_sparse_optimizers` made for the group `name` (its dense and item-row parts)."""
    return [optimizers[key] for key in (name, f"{name}_items") if key in optimizers]
