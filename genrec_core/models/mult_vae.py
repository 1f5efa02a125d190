"""Mult-VAE (Liang, Krishnan, Hoffman, Jebara, WWW 2018).

Encoder q(z|x): L2-normalised, dropped-out history -> tanh hidden -> (mu, logvar).
Decoder: z -> tanh hidden -> logits over items, multinomial likelihood.
Loss per user: -sum_i x_i log softmax(logits)_i + beta * KL(q(z|x) || N(0, I)),
with beta annealed linearly from 0 to `beta_cap` over `total_anneal_steps` updates.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from genrec_core.config import MultVAEConfig
from genrec_core.data.interactions import Interactions
from genrec_core.models.base import FitOptions, Recommender, Validation
from genrec_core.models.torch_utils import csr_rows_to_dense, normalized_binary_rows

log = logging.getLogger(__name__)


class MultVAENet(nn.Module):
    """The network alone; training lives in `MultVAE`."""

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int, dropout: float) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Linear(n_items, hidden_dim)
        self.to_params = nn.Linear(hidden_dim, 2 * latent_dim)
        self.decoder_hidden = nn.Linear(latent_dim, hidden_dim)
        self.decoder_out = nn.Linear(hidden_dim, n_items)
        for layer in (self.encoder, self.to_params, self.decoder_hidden, self.decoder_out):
            nn.init.xavier_normal_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.encoder(self.drop(F.normalize(x, dim=1))))
        mu, logvar = self.to_params(h).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder_out(torch.tanh(self.decoder_hidden(z)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return self.decode(z), mu, logvar


def mult_vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, negative log-likelihood, KL), each averaged over the batch's users."""
    neg_ll = -(F.log_softmax(logits, dim=1) * x).sum(dim=1).mean()
    kl = (0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0)).sum(dim=1).mean()
    return neg_ll + beta * kl, neg_ll, kl


class MultVAE(Recommender):
    name = "mult_vae"

    def __init__(self, config: MultVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or MultVAEConfig()
        self.net: MultVAENet | None = None
        self._encoder_t: torch.Tensor | None = None  # encoder weight transposed, cached for scoring
        self.best_epoch = 0

    def _build(self, n_items: int) -> MultVAENet:
        c = self.config
        return MultVAENet(n_items, c.hidden_dim, c.latent_dim, c.dropout).to(self.device)

    def initial_network(self, n_items: int, seed: int) -> MultVAENet:
        """The untrained network `fit` starts from for this seed."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._build(n_items)

    def _fit(self, train: Interactions, options: FitOptions) -> None:
        c = self.config
        x_all = train.binary()
        rows = train.users_with_history()
        self.net = self.initial_network(train.n_items, options.seed)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)
        order_rng = np.random.default_rng(options.seed)
        step = 0
        best_ndcg, best_epoch, best_state = -1.0, 0, None
        self.training_log = []
        with torch.random.fork_rng(devices=[]):  # dropout/sampling noise seeded from the options, not global state
            torch.manual_seed(options.seed + 1)
            for epoch in range(c.epochs):
                self.net.train()
                perm = order_rng.permutation(rows)
                total = 0.0
                for start in range(0, len(perm), c.batch_size):
                    batch = csr_rows_to_dense(x_all[np.sort(perm[start:start + c.batch_size])], self.device)
                    beta = min(c.beta_cap, step / c.total_anneal_steps)
                    logits, mu, logvar = self.net(batch)
                    loss, _, _ = mult_vae_loss(logits, batch, mu, logvar, beta)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    total += float(loss.detach()) * batch.shape[0]
                entry = {"epoch": epoch + 1, "loss": total / len(perm), "beta": beta}
                if options.validation is not None:
                    entry["val_ndcg"] = self._validation_ndcg(options.validation)
                    if entry["val_ndcg"] > best_ndcg:
                        best_ndcg, best_epoch = entry["val_ndcg"], epoch + 1
                        best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                    elif epoch + 1 - best_epoch >= options.validation.patience:
                        self.training_log.append(entry)
                        break
                self.training_log.append(entry)
                log.debug("mult_vae %s", entry)
        if best_state is not None:
            self.net.load_state_dict(best_state)  # the best-validation epoch's weights
        self.best_epoch = best_epoch if best_state is not None else len(self.training_log)
        self.net.eval()
        self._encoder_t = None

    def _validation_ndcg(self, validation: Validation) -> float:
        from genrec_core.evaluate import evaluate

        self.net.eval()
        self._encoder_t = None
        metrics = evaluate(self, validation.history, validation.targets, validation.k, chunk_size=4096)
        return float(metrics[f"ndcg@{validation.k}"] or 0.0)

    def prepare(self, history: sp.csr_matrix) -> torch.Tensor:
        """The chunk's normalised binary rows as a sparse CPU tensor (pinned when scoring on CUDA)."""
        self._check_history(history)
        x = normalized_binary_rows(history, "cpu")
        return x.pin_memory() if str(self.device).startswith("cuda") else x

    def score(self, history: sp.csr_matrix) -> torch.Tensor:
        """Logits for each history row (binarised, as in training), computed from the mean of q(z|x)."""
        return self.score_prepared(self.prepare(history))

    @torch.no_grad()
    def score_prepared(self, prepared: torch.Tensor) -> torch.Tensor:
        assert self.net is not None
        self.net.eval()
        # First layer as sparse x dense: a history has tens of items, the catalogue tens of thousands.
        x = prepared.to(self.device, non_blocking=True)
        if self._encoder_t is None or self._encoder_t.device != x.device:
            self._encoder_t = self.net.encoder.weight.detach().t().contiguous()
        h = torch.tanh(torch.sparse.mm(x, self._encoder_t) + self.net.encoder.bias)
        mu, _ = self.net.to_params(h).chunk(2, dim=1)
        return self.net.decode(mu)

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump()

    def state(self) -> dict[str, torch.Tensor]:
        assert self.net is not None
        return self.net.state_dict()

    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, torch.Tensor]) -> None:
        self.config = MultVAEConfig(**config)
        self.n_items = n_items
        self.net = self._build(n_items)
        self.net.load_state_dict(state)
        self.net.eval()
        self._encoder_t = None
