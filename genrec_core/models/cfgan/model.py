"""CFGAN (Chae, Kang, Kim, Lee, CIKM 2018), with zero-reconstruction (ZR) and partial masking (PM).

The generator G(c_u) maps a user's history c_u to a purchase vector in [0, 1]^items;
the discriminator D(r, c_u) tells real (r = c_u) from generated vectors, conditioned
on the history. Generated vectors are masked to the purchased items plus a sampled
share of unpurchased ones (PM, `pm_ratio`), so D judges the parts G must get right;
ZR adds alpha * sum of G's outputs squared over another sampled share of unpurchased
items (`zr_ratio`), pushing them to zero. Losses as in the paper:
  D: -log D(c_u, c_u) - log(1 - D(G(c_u) * m_u, c_u))
  G:  log(1 - D(G(c_u) * m_u, c_u)) + alpha * sum_{j in ZR} G(c_u)_j^2
Unpurchased items are sampled per user as Bernoulli(ratio) draws, so the share is `ratio`
in expectation rather than exactly. Scores are G's pre-sigmoid outputs (same order).

The literature finds CFGAN's ZR term does most of the work, which leaves a denoising
autoencoder in a GAN's clothes; the quality benchmark reports where it lands here.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from genrec_core.models.cfgan import SPEC, CFGANConfig
from genrec_core.models.neural import NeuralRecommender, SparseInputNet, at_least_float32


def _mlp(n_in: int, hidden: int, layers: int, n_out: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.Sigmoid()]
        width = hidden
    modules.append(nn.Linear(width, n_out))
    return nn.Sequential(*modules)


class CFGANNet(SparseInputNet):
    def __init__(self, n_items: int, config: CFGANConfig) -> None:
        super().__init__()
        self.generator = _mlp(n_items, config.generator_hidden, config.generator_layers, n_items)
        self.discriminator = _mlp(2 * n_items, config.discriminator_hidden, config.discriminator_layers, 1)

    def generate(self, history: torch.Tensor) -> torch.Tensor:
        """G's purchase vector in [0, 1]."""
        return torch.sigmoid(self.generator(history))

    def discriminate(self, vector: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """D's logit that (vector, history) is real."""
        return self.discriminator(torch.cat([vector, history], dim=1)).squeeze(1)

    def score_sparse(self, x: torch.Tensor) -> torch.Tensor:
        first = self.generator[0]
        assert isinstance(first, nn.Linear)
        return self.generator[1:](self.sparse_linear(x, first))


def sample_unseen(history: torch.Tensor, ratio: float) -> torch.Tensor:
    """0/1 mask of roughly `ratio` of each user's unpurchased items."""
    return ((torch.rand_like(history) < ratio) & (history == 0)).to(history.dtype)


def discriminator_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """-log D(real) - log(1 - D(fake)), averaged over users."""
    return (F.softplus(-real_logit) + F.softplus(fake_logit)).mean()


def generator_loss(
    fake_logit: torch.Tensor, generated: torch.Tensor, zr_mask: torch.Tensor, zr_weight: float
) -> torch.Tensor:
    """log(1 - D(fake)) + alpha * sum over ZR items of G^2, averaged over users."""
    return (-F.softplus(fake_logit) + zr_weight * (generated.pow(2) * zr_mask).sum(dim=1)).mean()


class CFGAN(NeuralRecommender):
    spec = SPEC
    config: CFGANConfig
    normalized_input = False

    def _build(self, n_items: int) -> CFGANNet:
        return CFGANNet(n_items, self.config)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        assert isinstance(self.net, CFGANNet)
        lr = self.config.learning_rate
        return {
            "generator": torch.optim.Adam(self.net.generator.parameters(), lr=lr),
            "discriminator": torch.optim.Adam(self.net.discriminator.parameters(), lr=lr),
        }

    def _train_epoch(
        self, x_all: sp.csr_matrix, order: np.ndarray, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, float]:
        assert isinstance(self.net, CFGANNet)
        c, net = self.config, self.net
        d_total = g_total = 0.0
        for history in self.batches(x_all, order):
            for _ in range(c.discriminator_steps):
                with self.autocast():
                    with torch.no_grad():
                        fake = net.generate(history) * (history + sample_unseen(history, c.pm_ratio))
                    loss_d = discriminator_loss(
                        at_least_float32(net.discriminate(history, history)),
                        at_least_float32(net.discriminate(fake, history)),
                    )
                net.zero_grad(set_to_none=True)
                loss_d.backward()
                optimizers["discriminator"].step()
            for _ in range(c.generator_steps):
                with self.autocast():
                    generated = net.generate(history)
                    fake = generated * (history + sample_unseen(history, c.pm_ratio))
                    fake_logit = at_least_float32(net.discriminate(fake, history))
                loss_g = generator_loss(
                    fake_logit, at_least_float32(generated), sample_unseen(history, c.zr_ratio), c.zr_weight
                )
                net.zero_grad(set_to_none=True)
                loss_g.backward()
                optimizers["generator"].step()
            self._step += 1
            d_total += float(loss_d.detach()) * history.shape[0]
            g_total += float(loss_g.detach()) * history.shape[0]
        n = max(len(order), 1)
        return {"discriminator_loss": d_total / n, "generator_loss": g_total / n}
