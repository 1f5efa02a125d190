"""Sampled softmax: a softmax over the whole catalogue estimated from a few items, for large catalogues.

log Z = log sum_j exp(s_j) over every item is split into the row's own positives (exact) and the
rest, estimated by importance sampling from `n` items drawn with replacement from a proposal q
(popularity, or uniform): sum_{j not positive} exp(s_j) ~ (1/n) sum_k exp(s_k) / q_k, the drawn
items that are positives of the row ("accidental hits") left out. The estimate of Z is unbiased;
its log is the log-Q corrected logsumexp (Bengio & Senecal 2008; Yi et al., RecSys 2019). Only
training uses it: validation and scoring stay exact over all items.

Used by the VAEs' decoders (a multinomial over each user's history) and by SASRec's next item.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genrec_core.models.item_rows import item_rows
from genrec_core.models.spec import Proposal
from genrec_core.models.torch_utils import at_least_float32


class ItemSampler:
    """Draws items for one update from a fixed proposal and knows each item's log-probability under it."""

    def __init__(self, item_counts: np.ndarray, proposal: Proposal, device: str | torch.device) -> None:
        """`item_counts`: training interactions per item (popularity is counts + 1, so no item has q = 0)."""
        counts = np.asarray(item_counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
            raise ValueError("item_counts must be a non-empty vector of non-negative counts")
        if proposal == "popularity":
            q = (counts + 1.0) / (counts + 1.0).sum()
        elif proposal == "uniform":
            q = np.full(counts.size, 1.0 / counts.size)
        else:
            raise ValueError(f"unknown proposal {proposal!r}: use 'popularity' or 'uniform'")
        self.proposal = proposal
        self.probabilities = torch.from_numpy(q).float().to(device)
        self.log_q = torch.from_numpy(np.log(q)).float().to(device)

    @property
    def n_items(self) -> int:
        return int(self.log_q.shape[0])

    def draw(self, n: int) -> torch.Tensor:
        """`n` item indices drawn with replacement (from torch's global generator, which the fit seeds)."""
        return torch.multinomial(self.probabilities, n, replacement=True)


def log_partition(
    own: torch.Tensor, own_mask: torch.Tensor | None, drawn: torch.Tensor, drawn_log_q: torch.Tensor, hits: torch.Tensor
) -> torch.Tensor:
    """Per row, the estimate of log sum_j exp(s_j) over all items.

    own [rows, p]: the logits of the row's positives (`own_mask` marks which columns are the row's,
    None: all); drawn [rows, n]: logits of the drawn items; drawn_log_q [n]: their log q;
    hits [rows, n]: True where a drawn item is a positive of the row (already counted in `own`).
    """
    n = drawn.shape[1]
    rest = (drawn - drawn_log_q - math.log(n)).masked_fill(hits, float("-inf"))
    if own_mask is not None:
        own = own.masked_fill(~own_mask, float("-inf"))
    return torch.logsumexp(torch.cat([own, rest], dim=1), dim=1)


def next_item_loss(
    hidden: torch.Tensor, table: torch.Tensor, target: torch.Tensor, sampler: ItemSampler, negatives: int
) -> torch.Tensor:
    """Mean sampled cross-entropy of one target item per row: hidden [rows, d], table [items, d], target [rows]."""
    drawn = sampler.draw(negatives)
    positive = at_least_float32((hidden * table[target]).sum(-1, keepdim=True))
    drawn_logits = at_least_float32(hidden @ table[drawn].T)
    hits = drawn[None, :] == target[:, None]
    return (log_partition(positive, None, drawn_logits, sampler.log_q[drawn], hits) - positive[:, 0]).mean()


def multinomial_nll(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    x: torch.Tensor,
    sampler: ItemSampler,
    negatives: int,
) -> torch.Tensor:
    """Mean over rows of -sum_i x_ui log softmax(hidden @ weight.T + bias)_i, with the softmax sampled.

    x is a sparse COO [rows, items] of the batch's histories (binary); only the columns of the batch's
    positives and of the drawn items are computed, never a [rows, items] block, and `weight` (one row
    per item) gets a sparse gradient over those rows.
    """
    x = x.coalesce()
    rows, cols = x.indices()
    columns, position = torch.unique(cols, return_inverse=True)  # sorted
    mask = torch.zeros(x.shape[0], len(columns), dtype=torch.bool, device=hidden.device)
    mask[rows, position] = True
    values = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)
    values[rows, position] = x.values().float()
    drawn = sampler.draw(negatives)
    used = torch.cat([columns, drawn])
    logits = at_least_float32(hidden @ item_rows(weight, used).T + bias[used])  # weight's gradient: these rows only
    own, drawn_logits = logits[:, : len(columns)], logits[:, len(columns) :]
    at = torch.searchsorted(columns, drawn).clamp(max=len(columns) - 1)
    hits = mask[:, at] & (columns[at] == drawn)[None, :]
    log_z = log_partition(own, mask, drawn_logits, sampler.log_q[drawn], hits)
    return -((own - log_z[:, None]) * values).sum(dim=1).mean()
