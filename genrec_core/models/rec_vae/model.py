"""RecVAE (Shenbin, Alekseev, Tutubalina, Malykh, Nikolenko, WSDM 2020).

Changes to Mult-VAE that the paper introduces, all here:
- a deeper encoder: five swish layers with dense residual sums and layer norm;
- a composite prior: a mixture of N(0, I), the posterior of the encoder as it was after
  the previous epoch (which keeps the encoder from drifting), and a wide N(0, e^10 I);
- beta rescaled per user: beta(x) = gamma * |x| (users with more history get a larger KL weight);
- alternating updates: each epoch trains the encoder for `encoder_passes` passes (with
  input dropout), then the decoder (a single linear layer) for `decoder_passes` (no dropout).
"""

from __future__ import annotations

import copy
import math
from typing import cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from genrec_core.models.item_rows import ItemInput, group, row_sparse_optimizers
from genrec_core.models.neural import NeuralRecommender, SparseInputNet
from genrec_core.models.rec_vae import SPEC, RecVAEConfig
from genrec_core.models.sampled_softmax import ItemSampler, multinomial_nll
from genrec_core.models.torch_utils import at_least_float32, row_sums, sparse_normalize_dropout

_LOG_2PI = math.log(2.0 * math.pi)
_WIDE_LOGVAR = 10.0
_LAYERS = 5


def log_normal_pdf(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar))."""
    return -0.5 * (logvar + _LOG_2PI + (z - mu).pow(2) / logvar.exp())


class RecVAEEncoder(nn.Module):
    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [ItemInput(n_items, hidden_dim)] + [nn.Linear(hidden_dim, hidden_dim) for _ in range(_LAYERS - 1)]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(hidden_dim, eps=0.1) for _ in range(_LAYERS)])
        self.mu = nn.Linear(hidden_dim, latent_dim)
        self.logvar = nn.Linear(hidden_dim, latent_dim)

    @property
    def first(self) -> ItemInput:
        """The first layer, over items."""
        return cast(ItemInput, self.layers[0])

    def forward_from_first(self, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rest of the encoder given the first layer's pre-activation (dense or sparse-computed)."""
        h = self.norms[0](F.silu(first))
        residual = h
        for layer, norm in zip(self.layers[1:], self.norms[1:]):
            h = norm(F.silu(layer(h)) + residual)
            residual = residual + h
        return self.mu(h), self.logvar(h)

    def forward(self, x: torch.Tensor, dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) for a dense or sparse COO batch of binary rows."""
        if x.is_sparse:
            return self.forward_from_first(self.first(sparse_normalize_dropout(x, dropout, self.training)))
        return self.forward_from_first(self.first(F.dropout(F.normalize(x, dim=1), p=dropout, training=self.training)))


class RecVAENet(SparseInputNet):
    """Encoder, the frozen copy that defines the composite prior, and a linear decoder."""

    log_prior_weights: torch.Tensor  # a buffer

    def __init__(
        self, n_items: int, hidden_dim: int, latent_dim: int, prior_weights: tuple[float, float, float]
    ) -> None:
        super().__init__()
        self.encoder = RecVAEEncoder(n_items, hidden_dim, latent_dim)
        self.prior_encoder = copy.deepcopy(self.encoder)
        self.prior_encoder.requires_grad_(False)
        self.decoder = nn.Linear(latent_dim, n_items)
        self.register_buffer("log_prior_weights", torch.log(torch.tensor(prior_weights, dtype=torch.float32)))

    def item_parameters(self) -> list[torch.Tensor]:
        """The parameters with one row per item (sparse gradients under a sampled softmax)."""
        return [self.encoder.first.item_weight, self.decoder.weight]

    def update_prior(self) -> None:
        self.prior_encoder.load_state_dict(self.encoder.state_dict())

    def log_prior(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Elementwise log of the composite prior p(z | x) = sum_k w_k N_k(z)."""
        with torch.no_grad():
            self.prior_encoder.eval()
            post_mu, post_logvar = self.prior_encoder(x, dropout=0.0)
        zeros = torch.zeros_like(z)
        parts = torch.stack(
            [
                log_normal_pdf(z, zeros, zeros),
                log_normal_pdf(z, post_mu, post_logvar),
                log_normal_pdf(z, zeros, zeros + _WIDE_LOGVAR),
            ],
            dim=-1,
        )
        return torch.logsumexp(parts + self.log_prior_weights, dim=-1)

    def loss(
        self, x: torch.Tensor, dropout: float, gamma: float, sampled: tuple[ItemSampler, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(negative ELBO, negative log-likelihood, weighted KL), averaged over the batch's users.
        `sampled` (a sparse `x`): the likelihood's softmax from the sampler and that many drawn items."""
        mu, logvar = self.encoder(x, dropout)
        mu, logvar = at_least_float32(mu), at_least_float32(logvar)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        if sampled is None:
            neg_ll = -(F.log_softmax(at_least_float32(self.decoder(z)), dim=1) * x).sum(dim=1).mean()
        else:
            neg_ll = multinomial_nll(z, self.decoder.weight, self.decoder.bias, x, *sampled)
        kl_weight = gamma * row_sums(x)
        kl = ((log_normal_pdf(z, mu, logvar) - self.log_prior(x, z)).sum(dim=1) * kl_weight).mean()
        return neg_ll + kl, neg_ll, kl

    def score_sparse(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encoder.forward_from_first(self.encoder.first.score_sparse(x))
        return self.decoder(mu)


class RecVAE(NeuralRecommender):
    spec = SPEC
    config: RecVAEConfig

    def _build(self, n_items: int) -> RecVAENet:
        c = self.config
        return RecVAENet(n_items, c.hidden_dim, c.latent_dim, c.prior_weights)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        assert isinstance(self.net, RecVAENet)
        net = self.net
        rows = net.item_parameters() if self.sampling else []
        groups = {"encoder": net.encoder.parameters(), "decoder": net.decoder.parameters()}
        return row_sparse_optimizers(groups, rows, self.config.learning_rate)

    def _train_epoch(
        self, x_all: sp.csr_matrix, order: np.ndarray, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, float]:
        assert isinstance(self.net, RecVAENet)
        net, c = self.net, self.config
        rng = np.random.default_rng(self._step)  # reshuffle between passes, reproducibly
        encoder_loss = decoder_loss = 0.0
        sampled = None if self._sampler is None else (self._sampler, c.negatives)
        for _ in range(c.encoder_passes):
            encoder_loss = self.optimise(
                x_all,
                rng.permutation(order),
                group(optimizers, "encoder"),
                lambda batch: net.loss(batch, c.dropout, c.gamma, sampled)[0],
            )
        net.update_prior()
        for _ in range(c.decoder_passes):
            decoder_loss = self.optimise(
                x_all,
                rng.permutation(order),
                group(optimizers, "decoder"),
                lambda batch: net.loss(batch, 0.0, c.gamma, sampled)[0],
            )
        return {"encoder_loss": encoder_loss, "decoder_loss": decoder_loss}
