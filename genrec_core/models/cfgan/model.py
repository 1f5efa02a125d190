"""CFGAN (Chae, Kang, Kim, Lee, CIKM 2018), the ZR + PM variant, as the authors' code defines it.

The generator G(c_u) maps a user's history c_u to a real-valued purchase vector (a linear output
layer over sigmoid hidden units); the discriminator D(c_u, r) tells real (r = c_u) from generated
vectors, conditioned on the history. Generated vectors are masked to the user's purchased items
plus a sampled share of unpurchased ones (PM, `pm_ratio`), so D judges the parts G must get right;
ZR adds alpha * sum of G's raw outputs squared over another sampled share (`zr_ratio`), pushing
them to zero. Both samples hold exactly floor(ratio * |unpurchased|) items per user and are drawn
once per epoch (the same for D's and G's passes of that epoch). Losses, as in the authors' code:

  D: -log D(c_u, c_u) - log(1 - D(c_u, G(c_u) * m_u)) + l2_D * sum(theta_D^2) / 2
  G: -log D(c_u, G(c_u) * m_u)   (the non-saturating form)
     + alpha * sum_{j in ZR_u} G(c_u)_j^2 + l2_G * sum(theta_G^2) / 2

Two modes, as in the authors' code. `user` (the default): c_u is a user's row over the items, and the
lists are G's outputs for the user's history, so any user with a history is scored, new ones too.
`item` (the authors' choice on MovieLens): CFGAN runs on the transposed matrix, c_i being an item's
column over the users; user u's score for item i is G(c_i)_u, so the net's width is the number of users
and only users known at fit time have a score of their own (a user added since gets the average user's).

Each epoch runs `discriminator_steps` passes of D over the users (batches of
`discriminator_batch_size`), then `generator_steps` passes of G (`generator_batch_size`); weights
start Glorot-uniform and biases uniform in [-0.01, 0.01]. Lists rank by G's raw outputs. On CUDA
the forward passes stay in float32: bfloat16 rounds outputs near 1, a real/fake cue for D.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from genrec_core.data.interactions import Interactions
from genrec_core.models.base import FitOptions, Recommender, Validation
from genrec_core.models.cfgan import SPEC, CFGANConfig
from genrec_core.models.neural import NeuralRecommender, SparseInputNet
from genrec_core.models.torch_utils import csr_rows_to_dense

_BIAS_INIT = 0.01
_PM, _ZR = 0, 1  # which of an epoch's two samples (their salts differ)


def _mlp(n_in: int, hidden: int, layers: int, n_out: int, first_activation: bool = False) -> nn.Sequential:
    """Sigmoid hidden layers and a linear output; Glorot-uniform weights, small uniform biases."""
    modules: list[nn.Module] = [nn.Sigmoid()] if first_activation else []
    width = n_in
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.Sigmoid()]
        width = hidden
    modules.append(nn.Linear(width, n_out))
    for module in modules:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.uniform_(module.bias, -_BIAS_INIT, _BIAS_INIT)
    return nn.Sequential(*modules)


class CFGANNet(SparseInputNet):
    """G and D over vectors of `width` entries (items in user mode, users in item mode).

    D's first layer is one affine map of the concatenated (history, vector), kept as two blocks so a
    warm start onto a grown vocabulary keeps each block's old entries at their indices.
    """

    def __init__(self, width: int, config: CFGANConfig, n_items: int = 0) -> None:
        super().__init__()
        self.generator = _mlp(width, config.generator_hidden, config.generator_layers, width)
        hidden = config.discriminator_hidden
        self.condition = nn.Linear(width, hidden, bias=False)
        self.observed = nn.Linear(width, hidden)
        bound = float(np.sqrt(6.0 / (2 * width + hidden)))  # Glorot-uniform of the joint [2 * width, hidden] layer
        nn.init.uniform_(self.condition.weight, -bound, bound)
        nn.init.uniform_(self.observed.weight, -bound, bound)
        nn.init.uniform_(self.observed.bias, -_BIAS_INIT, _BIAS_INIT)
        self.discriminator_head = _mlp(hidden, hidden, config.discriminator_layers - 1, 1, first_activation=True)
        # item mode: G's last hidden layer for every item's column, refreshed from the training matrix
        self.item_hidden: torch.Tensor
        self.register_buffer("item_hidden", torch.zeros(n_items, config.generator_hidden))

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.condition.parameters(), *self.observed.parameters(), *self.discriminator_head.parameters()]

    def generate(self, history: torch.Tensor) -> torch.Tensor:
        """G's purchase vector (raw, linear outputs)."""
        out: torch.Tensor = self.generator(history)
        return out

    def discriminate(self, history: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """D's logit that `vector` is the real purchase vector of the row with `history`."""
        return self.discriminator_head(self.condition(history) + self.observed(vector)).squeeze(1)

    def discriminator_objective(
        self, history: torch.Tensor, pm: torch.Tensor, l2: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """D's loss (with its L2 term) on real vectors and G's, masked to purchased + PM items; and both logits."""
        with torch.no_grad():
            fake = self.generate(history) * (history + pm)
        real_logit, fake_logit = self.discriminate(history, history), self.discriminate(history, fake)
        loss = discriminator_loss(real_logit, fake_logit) + l2 * l2_penalty(self.discriminator_parameters())
        return loss, real_logit, fake_logit

    def generator_objective(
        self, history: torch.Tensor, pm: torch.Tensor, zr: torch.Tensor, zr_weight: float, l2: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G's loss (adversarial + ZR + its L2 term) and its adversarial part alone."""
        generated = self.generate(history)
        fake_logit = self.discriminate(history, generated * (history + pm))
        loss = generator_loss(fake_logit, generated, zr, zr_weight) + l2 * l2_penalty(self.generator.parameters())
        return loss, F.softplus(-fake_logit).mean()

    def score_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """User mode: G's outputs for sparse history rows."""
        first = self.generator[0]
        assert isinstance(first, nn.Linear)
        return self.generator[1:](self.sparse_linear(x, first))

    @torch.no_grad()
    def refresh_item_hidden(self, item_columns: sp.csr_matrix, chunk: int = 4096) -> None:
        """Item mode: G's last hidden layer for every item column (rows of the transposed training matrix)."""
        body = self.generator[:-1]
        for start in range(0, item_columns.shape[0], chunk):
            rows = csr_rows_to_dense(item_columns[start : start + chunk], str(self.item_hidden.device))
            self.item_hidden[start : start + len(rows)] = body(rows)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Item mode: scores [len(users), items] = G(c_i)_u for every item i; unknown users get the mean user's."""
        out = self.generator[-1]
        assert isinstance(out, nn.Linear)
        known = users < out.weight.shape[0]
        index = torch.where(known, users, 0)
        weight, bias = out.weight[index], out.bias[index]
        if not bool(known.all()):
            weight = torch.where(known[:, None], weight, out.weight.mean(dim=0))
            bias = torch.where(known, bias, out.bias.mean())
        return weight @ self.item_hidden.T + bias[:, None]


def l2_penalty(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum of squares / 2 over the parameters (TensorFlow's `l2_loss`, as the authors sum it)."""
    return torch.stack([p.pow(2).sum() for p in parameters]).sum() / 2


def discriminator_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """-log D(real) - log(1 - D(fake)), each averaged over users."""
    return F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()


def generator_loss(
    fake_logit: torch.Tensor, generated: torch.Tensor, zr_mask: torch.Tensor, zr_weight: float
) -> torch.Tensor:
    """-log D(fake) (non-saturating) + alpha * sum over ZR items of G^2, averaged over users."""
    return F.softplus(-fake_logit).mean() + zr_weight * (generated.pow(2) * zr_mask).sum(dim=1).mean()


_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix64(keys: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of (key + salt), in place on one copy: a bijection, so distinct keys never tie."""
    with np.errstate(over="ignore"):
        z = keys + np.uint64(salt) * _GOLDEN
        z ^= z >> np.uint64(30)
        z *= _MIX1
        z ^= z >> np.uint64(27)
        z *= _MIX2
        z ^= z >> np.uint64(31)
    return z


def sample_unseen(history: np.ndarray, users: np.ndarray, ratio: float, salt: int) -> np.ndarray:
    """0/1 float32 [len(users), items]: exactly floor(ratio * |unpurchased|) of each row's unpurchased items.

    Each row takes its unpurchased items of the smallest hash of (salt, row, item), so the draw depends only
    on those, never on the batch a row is in: a row's sample is the same in every pass of an epoch (the salt
    carries the seed and the epoch) and changes between epochs.
    """
    n_items = history.shape[1]
    keys = users.astype(np.uint64)[:, None] * np.uint64(n_items) + np.arange(n_items, dtype=np.uint64)[None, :]
    draw = _splitmix64(keys, salt)
    seen = history > 0
    draw[seen] = np.iinfo(np.uint64).max  # purchased items sort last and are never drawn
    count = np.floor(ratio * (~seen).sum(axis=1)).astype(np.int64)
    cutoff = np.take_along_axis(np.sort(draw, axis=1), np.maximum(count - 1, 0)[:, None], axis=1)
    return ((draw <= cutoff) & (count[:, None] > 0) & ~seen).astype(np.float32)


class CFGAN(NeuralRecommender):
    spec = SPEC
    config: CFGANConfig
    normalized_input = False

    def _build(self, n_items: int) -> CFGANNet:
        if self.config.mode == "user":
            return CFGANNet(n_items, self.config)
        if self.n_users_trained < 1:
            raise ValueError("item-based CFGAN: the number of users is needed to build the network")
        return CFGANNet(self.n_users_trained, self.config, n_items=n_items)

    def _fit(self, train: Interactions, options: FitOptions) -> None:
        self._item_columns: sp.csr_matrix | None = None
        if self.config.mode == "item":
            limit = self.config.item_mode_max_users
            if train.n_users > limit:
                raise ValueError(
                    f"cfgan: item mode on {train.n_users} users exceeds cfgan.item_mode_max_users={limit} "
                    "(its network is users wide); use mode = 'user' or raise the limit"
                )
            self._item_columns = train.binary().T.tocsr()
            self._item_rows = np.flatnonzero(np.diff(self._item_columns.indptr) > 0)
        try:
            super()._fit(train, options)
            self._refresh_item_hidden()
        finally:
            self._item_columns = None  # only the fit needs the training matrix

    def use_item_columns(self, train: Interactions) -> None:
        """Item mode: score from these item columns (e.g. all of train once validation has chosen the epoch),
        as a user-based model scores from the history it is given. The users must be the ones fitted on."""
        if self.config.mode != "item":
            return
        if train.n_users != self.n_users_trained or train.n_items != self.n_items:
            raise ValueError(
                f"cfgan: columns of {train.n_users} users x {train.n_items} items for a model fitted on "
                f"{self.n_users_trained} x {self.n_items}"
            )
        assert isinstance(self.net, CFGANNet)
        self.net.refresh_item_hidden(train.binary().T.tocsr())

    def _refresh_item_hidden(self) -> None:
        if self._item_columns is not None:
            assert isinstance(self.net, CFGANNet)
            self.net.refresh_item_hidden(self._item_columns)

    def _validation_ndcg(self, validation: Validation, model: Recommender | None = None) -> float:
        self._refresh_item_hidden()  # item mode: scores come from the items' hidden layer of this epoch's G
        return super()._validation_ndcg(validation, model)

    def prepare(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> Any:
        rows = super().prepare(history, users)
        if self.config.mode == "user":
            return rows
        if users is None or len(users) != history.shape[0]:
            raise ValueError("item-based CFGAN scores known users: pass the rows' user indices (`users`)")
        return rows, torch.from_numpy(np.asarray(users, dtype=np.int64))

    def network_scores(self, prepared: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.mode == "user":
            return super().network_scores(prepared)
        assert isinstance(self.net, CFGANNet)
        rows, users = prepared
        return self.net.score_users(users.to(self.device)), rows.to(self.device)

    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, torch.Tensor]) -> None:
        if "condition.weight" not in state:
            raise ValueError(
                "cfgan: this artifact was saved by genrec < 0.4, whose CFGAN differs (sigmoid output, saturating "
                "loss, another discriminator layout); retrain it (train.mode = retrain)"
            )
        parsed = self.spec.parse_config(config)
        if isinstance(parsed, CFGANConfig) and parsed.mode == "item":
            self.n_users_trained = int(state["generator.0.weight"].shape[1])
        super().load_state(config, n_items, state)

    def autocast(self) -> contextlib.AbstractContextManager:
        """No bfloat16: rounding G's outputs near 1 would tell D which vectors are generated."""
        return contextlib.nullcontext()

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        assert isinstance(self.net, CFGANNet)
        c = self.config
        # The fused kernel: many small updates per epoch, where the optimizer step would dominate (2.4x faster here).
        return {
            "generator": torch.optim.Adam(self.net.generator.parameters(), lr=c.generator_learning_rate, fused=True),
            "discriminator": torch.optim.Adam(
                self.net.discriminator_parameters(), lr=c.discriminator_learning_rate, fused=True
            ),
        }

    def _salt(self, which: int) -> int:
        """The sampling salt of this fit's seed, this epoch, and which sample (0: PM, 1: ZR)."""
        return (self._seed * 1_000_003 + self._epoch) * 2 + which

    def _batches(self, order: np.ndarray, size: int, shuffle: int) -> list[np.ndarray]:
        """The users of `order` reshuffled for one pass (reproducibly: seed, epoch, pass) in batches of `size`."""
        rng = np.random.default_rng([self._seed, self._epoch, shuffle])
        users = rng.permutation(order)
        return [users[start : start + size] for start in range(0, len(users), size)]

    def _rows(self, x_all: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        dense = csr_rows_to_dense(x_all[users], "cpu")
        return dense.numpy(), dense.to(self.device)

    def _train_epoch(
        self, x_all: sp.csr_matrix, order: np.ndarray, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, float]:
        """`discriminator_steps` passes of D over the users (item mode: the items), then `generator_steps` of G."""
        c = self.config
        if self._item_columns is not None:
            x_all = self._item_columns
            order = np.random.default_rng([self._seed, self._epoch]).permutation(self._item_rows)
        d_sums = np.zeros(3)  # loss x users, correct calls, calls
        for shuffle in range(c.discriminator_steps):
            for users in self._batches(order, c.discriminator_batch_size, shuffle):
                d_sums += self._discriminator_update(x_all, users, optimizers["discriminator"])
        g_sums = np.zeros(3)  # loss x users, adversarial loss x users, users
        for shuffle in range(c.generator_steps):
            for users in self._batches(order, c.generator_batch_size, c.discriminator_steps + shuffle):
                g_sums += self._generator_update(x_all, users, optimizers["generator"])
        return {
            "discriminator_loss": float(d_sums[0] / max(d_sums[2] / 2, 1)),
            "discriminator_accuracy": float(d_sums[1] / max(d_sums[2], 1)),
            "generator_loss": float(g_sums[0] / max(g_sums[2], 1)),
            "generator_adversarial_loss": float(g_sums[1] / max(g_sums[2], 1)),
        }

    def _masks(self, history_np: np.ndarray, users: np.ndarray, which: int, ratio: float) -> torch.Tensor:
        return torch.from_numpy(sample_unseen(history_np, users, ratio, self._salt(which))).to(self.device)

    def _discriminator_update(
        self, x_all: sp.csr_matrix, users: np.ndarray, optimizer: torch.optim.Optimizer
    ) -> np.ndarray:
        assert isinstance(self.net, CFGANNet)
        history_np, history = self._rows(x_all, users)
        pm = self._masks(history_np, users, _PM, self.config.pm_ratio)
        loss, real_logit, fake_logit = self.net.discriminator_objective(history, pm, self.config.discriminator_l2)
        self.net.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self._step += 1
        correct = float((real_logit > 0).sum() + (fake_logit < 0).sum())
        return np.array([float(loss.detach()) * len(users), correct, 2 * len(users)])

    def _generator_update(
        self, x_all: sp.csr_matrix, users: np.ndarray, optimizer: torch.optim.Optimizer
    ) -> np.ndarray:
        assert isinstance(self.net, CFGANNet)
        c = self.config
        history_np, history = self._rows(x_all, users)
        pm = self._masks(history_np, users, _PM, c.pm_ratio)
        zr = self._masks(history_np, users, _ZR, c.zr_ratio)
        loss, adversarial = self.net.generator_objective(history, pm, zr, c.zr_weight, c.generator_l2)
        self.net.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self._step += 1
        return np.array([float(loss.detach()) * len(users), float(adversarial.detach()) * len(users), len(users)])
