"""Mult-VAE (Liang, Krishnan, Hoffman, Jebara, WWW 2018).

Encoder q(z|x): L2-normalised, dropped-out history -> tanh hidden -> (mu, logvar).
Decoder: z -> tanh hidden -> logits over items, multinomial likelihood.
Loss per user: -sum_i x_i log softmax(logits)_i + beta * KL(q(z|x) || N(0, I)),
with beta annealed linearly from 0 to `beta_cap` over `total_anneal_steps` updates.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from genrec_core.models.item_rows import ItemInput, group, row_sparse_optimizers
from genrec_core.models.mult_vae import SPEC, MultVAEConfig
from genrec_core.models.neural import NeuralRecommender, SparseInputNet
from genrec_core.models.sampled_softmax import multinomial_nll
from genrec_core.models.torch_utils import at_least_float32, sparse_normalize_dropout


class MultVAENet(SparseInputNet):
    """The network alone; training lives in `MultVAE`."""

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int, dropout: float) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.drop = nn.Dropout(dropout)
        self.encoder = ItemInput(n_items, hidden_dim)
        self.to_params = nn.Linear(hidden_dim, 2 * latent_dim)
        self.decoder_hidden = nn.Linear(latent_dim, hidden_dim)
        self.decoder_out = nn.Linear(hidden_dim, n_items)
        nn.init.xavier_normal_(self.encoder.item_weight)
        nn.init.normal_(self.encoder.bias, std=0.001)
        for layer in (self.to_params, self.decoder_hidden, self.decoder_out):
            nn.init.xavier_normal_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)

    def item_parameters(self) -> list[torch.Tensor]:
        """The parameters with one row per item (sparse gradients under a sampled softmax)."""
        return [self.encoder.item_weight, self.decoder_out.weight]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z|x) for a dense or sparse COO batch of binary rows."""
        if x.is_sparse:
            first = self.encoder(sparse_normalize_dropout(x, self.drop.p, self.training))
        else:
            first = self.encoder(self.drop(F.normalize(x, dim=1)))
        mu, logvar = self.to_params(torch.tanh(first)).chunk(2, dim=1)
        return mu, logvar

    def decoder_state(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden layer: the logits are `decoder_out` of it."""
        return torch.tanh(self.decoder_hidden(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder_out(self.decoder_state(z))

    def sample_z(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.sample_z(mu, logvar)), mu, logvar

    def score_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the mean of q(z|x); `x` is the normalised history, sparse (a history has tens of
        items, the catalogue tens of thousands, so the first layer is a sparse product)."""
        h = torch.tanh(self.encoder.score_sparse(x))
        mu, _ = self.to_params(h).chunk(2, dim=1)
        return self.decode(mu)


def mult_vae_loss(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, negative log-likelihood, KL), each averaged over the batch's users."""
    neg_ll = -(F.log_softmax(at_least_float32(logits), dim=1) * x).sum(dim=1).mean()
    kl = gaussian_kl(mu, logvar)
    return neg_ll + beta * kl, neg_ll, kl


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), averaged over the batch's users."""
    mu, logvar = at_least_float32(mu), at_least_float32(logvar)
    return (0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0)).sum(dim=1).mean()


class MultVAE(NeuralRecommender):
    spec = SPEC
    config: MultVAEConfig

    def _build(self, n_items: int) -> MultVAENet:
        c = self.config
        return MultVAENet(n_items, c.hidden_dim, c.latent_dim, c.dropout)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        assert isinstance(self.net, MultVAENet)
        c = self.config
        rows = self.net.item_parameters() if self.sampling else []
        return row_sparse_optimizers({"adam": self.net.parameters()}, rows, c.learning_rate, c.weight_decay)

    def beta(self) -> float:
        """The KL weight at the current update: annealed linearly to the cap (held at the cap when fine-tuning)."""
        if self.warm_started:
            return self.config.beta_cap
        return min(self.config.beta_cap, self._step / self.config.total_anneal_steps)

    def _train_epoch(
        self, x_all: sp.csr_matrix, order: np.ndarray, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, float]:
        assert isinstance(self.net, MultVAENet)
        net = self.net

        def loss_of(batch: torch.Tensor) -> torch.Tensor:
            if self._sampler is None:
                logits, mu, logvar = net(batch)
                return mult_vae_loss(logits, batch, mu, logvar, self.beta())[0]
            mu, logvar = net.encode(batch)
            state = net.decoder_state(net.sample_z(mu, logvar))
            out = net.decoder_out
            neg_ll = multinomial_nll(state, out.weight, out.bias, batch, self._sampler, self.config.negatives)
            return neg_ll + self.beta() * gaussian_kl(mu, logvar)

        loss = self.optimise(x_all, order, group(optimizers, "adam"), loss_of)
        return {"loss": loss, "beta": self.beta()}
