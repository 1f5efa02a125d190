"""SASRec (Kang & McAuley, ICDM 2018), trained as SASRec+ (Klenitskiy & Vasilev, RecSys 2023).

Input: a user's latest `max_length` items, oldest first and right-aligned (`data/sequences.py`).
Item embeddings (scaled by sqrt(d)) plus learned position embeddings, dropout, then `blocks`
causal self-attention blocks as in the authors' code: queries from a layer-normed input, keys and
values from the input itself, a residual, layer norm, a point-wise feed-forward with its residual;
a final layer norm. A position attends to itself and to earlier real items, never to padding, so a
batch is cut to its longest history: leading padding changes nothing but the cost.
Item embeddings are shared with the output layer: the score of item i after position t is
h_t . e_i. Training predicts the item at every next position, with cross-entropy over the whole
catalogue (`loss = "softmax"`) or over the target and items drawn by popularity with the log-Q
correction (`"sampled_softmax"`, Yi et al., RecSys 2019; also what "softmax" trains on above
`sampled_softmax_above` items, as the VAEs do). Lists come from the last position.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from genrec_core.data.interactions import Interactions
from genrec_core.data.sequences import PAD, check_places, last_items, without_leading_padding
from genrec_core.models.base import FitOptions
from genrec_core.models.neural import NeuralRecommender
from genrec_core.models.sampled_softmax import ItemSampler, next_item_loss
from genrec_core.models.sasrec import SPEC, SASRecConfig
from genrec_core.models.torch_utils import at_least_float32


class CausalBlock(nn.Module):
    """One SASRec block: masked multi-head self-attention and a point-wise feed-forward, each with a residual."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"sasrec: hidden_dim {dim} is not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.attention_norm = nn.LayerNorm(dim, eps=1e-8)
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.forward_norm = nn.LayerNorm(dim, eps=1e-8)
        self.inner, self.outer = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """`allowed` [batch, 1, L, L]: True where a query position may attend to a key position."""
        queries = self.attention_norm(x)
        attended = F.scaled_dot_product_attention(
            self._split(self.query(queries)),
            self._split(self.key(x)),
            self._split(self.value(x)),
            attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
        )
        x = queries + self.drop(self.out(attended.transpose(1, 2).reshape(x.shape)))
        x = self.forward_norm(x)
        return x + self.drop(self.outer(self.drop(F.relu(self.inner(x)))))


class SASRecNet(nn.Module):
    """The network alone; training lives in `SASRec`. Item i is embedding row i + 1 (row 0: padding), so a
    grown catalogue appends rows and an old item keeps its own."""

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.positions = nn.Embedding(config.max_length, dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(CausalBlock(dim, config.heads, config.dropout) for _ in range(config.blocks))
        self.final_norm = nn.LayerNorm(dim, eps=1e-8)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_normal_(parameter)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def hidden(self, sequences: torch.Tensor) -> torch.Tensor:
        """[batch, L, d] states of right-aligned item sequences [batch, L] (PAD = -1)."""
        real = sequences != PAD
        length = sequences.shape[1]
        x = self.items(sequences + 1) * math.sqrt(self.items.embedding_dim)
        x = self.drop(x + self.positions.weight[-length:]) * real.unsqueeze(-1)
        causal = torch.ones(length, length, dtype=torch.bool, device=sequences.device).tril()
        itself = torch.eye(length, dtype=torch.bool, device=sequences.device)
        allowed = (causal & (real.unsqueeze(1) | itself)).unsqueeze(1)  # a padded position attends only itself
        for block in self.blocks:
            x = block(x, allowed) * real.unsqueeze(-1)
        return self.final_norm(x)

    def item_table(self) -> torch.Tensor:
        """[n_items, d] output embeddings (the input ones, shared)."""
        return self.items.weight[1:]

    def score_sequences(self, sequences: torch.Tensor) -> torch.Tensor:
        """[batch, n_items] scores of the next item after each sequence's last position."""
        return self.hidden(sequences)[:, -1] @ self.item_table().T


class SASRec(NeuralRecommender):
    spec = SPEC
    config: SASRecConfig

    def __init__(self, config: SASRecConfig | None = None) -> None:
        super().__init__(config)
        self._train_order: sp.csr_matrix | None = None

    def _build(self, n_items: int) -> SASRecNet:
        return SASRecNet(n_items, self.config)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        assert self.net is not None
        c = self.config
        return {
            "adam": torch.optim.Adam(
                self.net.parameters(), lr=c.learning_rate, betas=(0.9, 0.98), weight_decay=c.weight_decay
            )
        }

    def _fit(self, train: Interactions, options: FitOptions) -> None:
        order = train.ordered()
        check_places(order, f"{self.name}: training history")
        self._train_order = order
        try:
            super()._fit(train, options)
        finally:
            self._train_order = None

    def item_sampler(self, train: Interactions) -> ItemSampler | None:
        """A proposal when the loss is `sampled_softmax`, or the catalogue is above `sampled_softmax_above`."""
        if self.config.loss != "sampled_softmax" and not self.config.samples_softmax(train.n_items):
            return None
        return ItemSampler(
            np.bincount(train.ordered().indices, minlength=train.n_items), self.config.proposal, self.device
        )

    def _train_epoch(
        self, x_all: sp.csr_matrix, order: np.ndarray, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, float]:
        """Every user with 2+ items predicts each of its next items from the ones before (teacher forcing)."""
        assert self._train_order is not None
        history = self._train_order
        users = order[np.diff(history.indptr)[order] >= 2]
        optimizer, total, positions = optimizers["adam"], 0.0, 0
        for start in range(0, len(users), self.config.batch_size):
            rows = np.sort(users[start : start + self.config.batch_size])
            latest = without_leading_padding(last_items(history[rows], self.config.max_length + 1), keep=2)
            window = torch.from_numpy(latest).to(self.device)
            inputs, targets = window[:, :-1], window[:, 1:]
            with self.autocast():
                loss, count = self._loss(inputs, targets)
            self.net.zero_grad(set_to_none=True)  # type: ignore[union-attr]
            loss.backward()
            optimizer.step()
            self._step += 1
            total += float(loss.detach()) * count
            positions += count
        return {"loss": total / max(positions, 1)}

    def _loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy of the next item over the positions that have one, and their number."""
        assert isinstance(self.net, SASRecNet)
        predicts = (inputs != PAD) & (targets != PAD)
        hidden = self.net.hidden(inputs)[predicts]
        target = targets[predicts]
        table = self.net.item_table()
        if self._sampler is None:
            return F.cross_entropy(at_least_float32(hidden @ table.T), target), len(target)
        return next_item_loss(hidden, table, target, self._sampler, self.config.negatives), len(target)

    def prepare(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> Any:
        """The chunk's latest items as a [rows, max_length] index tensor (pinned on CUDA)."""
        self._check_history(history)
        check_places(history, f"{self.name}: history")
        sequences = torch.from_numpy(without_leading_padding(last_items(history, self.config.max_length)))
        return sequences.pin_memory() if str(self.device).startswith("cuda") else sequences

    @torch.no_grad()
    def score_prepared(self, prepared: Any) -> torch.Tensor:
        assert isinstance(self.net, SASRecNet)
        self.net.eval()
        with self.autocast():
            scores = self.net.score_sequences(prepared.to(self.device, non_blocking=True))
        return scores.float()
