"""What the PyTorch models share: a seeded epoch loop with early stopping, checkpoints and
resume, warm starts onto a grown item vocabulary, mixed precision on CUDA, scoring with
the first layer as a sparse product, and an optional linear expert.

The linear expert (config `linear_expert`) makes the model a product of experts: the
network's multinomial p(i | u) times exp(w * s(u, i)), where s is EASE's item-item score
(Steck 2019) fitted in closed form on the same training matrix; lists rank by
log p(i | u) + w * s(u, i). The network is trained exactly as without it; EASE's L2 and
the weight w are chosen on the validation set when one is given. EASE's matrix is
items^2, so above `expert_max_items` items the expert is SANSA (EASE's weights as two
sparse factors, genrec_core/models/sansa) instead.

A subclass provides the network (`_build`), its optimizers and one epoch of updates;
the network itself (an `nn.Module` with `score_sparse`) knows nothing about training.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from genrec_core.data.interactions import Interactions
from genrec_core.models.base import FitOptions, Recommender, Validation
from genrec_core.models.sampled_softmax import ItemSampler
from genrec_core.models.spec import ItemWidthConfig, SampledSoftmaxConfig
from genrec_core.models.torch_utils import binary_rows_tensor, csr_rows_to_dense, normalized_binary_rows

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
EXPERT_L2_GRID = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)
EXPERT_WEIGHT_GRID = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0)
DEFAULT_EXPERT_L2, DEFAULT_EXPERT_WEIGHT = 500.0, 10.0
_EXPERT_KEYS = ("expert.item_item", "expert.weight", "expert.l2")
_SANSA_EXPERT = "expert.sansa."  # prefix of a SANSA expert's factors in the state


def grow_state(old: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`fresh` (a new network for the grown vocabulary) with every trained value of `old` copied in.

    Item indices are append-only, so an old item's row or column keeps its index: along
    the one axis whose size grew, the leading slice is copied and the new items keep
    their fresh initialisation. Any other change of shape is an error.
    """
    grown = {}
    for name, new in fresh.items():
        if name not in old:
            raise ValueError(f"warm start: the previous model has no parameter {name!r}")
        prev = old[name]
        if prev.shape == new.shape:
            grown[name] = prev.clone()
            continue
        differing = [axis for axis in range(new.dim()) if prev.shape[axis] != new.shape[axis]]
        if prev.dim() != new.dim() or len(differing) != 1 or prev.shape[differing[0]] > new.shape[differing[0]]:
            raise ValueError(f"warm start: cannot grow {name!r} from {tuple(prev.shape)} to {tuple(new.shape)}")
        out = new.clone()
        out.narrow(differing[0], 0, prev.shape[differing[0]]).copy_(prev)
        grown[name] = out
    return grown


class SparseInputNet(nn.Module):
    """A network whose scores for a chunk can be computed from a sparse input."""

    @abstractmethod
    def score_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """Scores [rows, items] for a sparse COO input (as `NeuralRecommender.input_rows` builds it)."""

    def sparse_linear(self, x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
        """`layer(x)` for a sparse `x`, with the transposed weight cached until the weight changes."""
        weight = layer.weight
        key = (id(layer), weight.data_ptr(), weight._version, weight.device)
        cache = self.__dict__.setdefault("_transposed", {})
        if cache.get("key") != key:
            cache.update(key=key, value=weight.detach().t().contiguous())
        return torch.sparse.mm(x, cache["value"]) + layer.bias


class NeuralRecommender(Recommender):
    """Base of the PyTorch models; the config must have epochs, finetune_epochs and batch_size."""

    normalized_input: ClassVar[bool] = True  # L2-normalised binary rows (VAEs) or plain binary rows (CFGAN)

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.config: Any = config or self.spec.default_config()
        self.net: nn.Module | None = None
        self.best_epoch = 0
        self.warm_started = False
        self._step = 0  # updates so far (annealing schedules read it)
        self._seed, self._epoch = 0, 0  # the fit's seed and the epoch in progress (per-epoch sampling reads them)
        self.n_users_trained = 0  # users in the vocabulary the network was fitted on
        self.expert: Recommender | None = None  # the linear expert: EASE, or SANSA above expert_max_items
        self.expert_weight = 0.0
        self.expert_l2: float | None = None
        self._sampler: ItemSampler | None = None  # the sampled softmax's proposal, while fitting with one

    # ---- what each model provides -------------------------------------------------------
    @abstractmethod
    def _build(self, n_items: int) -> nn.Module:
        """The untrained network for `n_items` items (a `SparseInputNet` unless the model overrides scoring)."""

    @abstractmethod
    def _optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    @abstractmethod
    def _train_epoch(
        self, x_all: sp.csr_matrix, order: np.ndarray, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, float]:
        """One epoch of updates over the users in `order`; returns mean losses for the log."""

    # ---- shared machinery ---------------------------------------------------------------
    def initial_network(self, n_items: int, seed: int, n_users: int | None = None) -> nn.Module:
        """The untrained network `fit` starts from for this seed (`n_users`: for a net whose width is the users)."""
        if n_users is not None:
            self.n_users_trained = n_users
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._build(n_items).to(self.device)

    def batches(self, x_all: sp.csr_matrix, order: np.ndarray) -> Iterator[torch.Tensor]:
        """[batch, items] blocks of the users in `order` on the model's device: dense, or sparse COO
        binary rows when training with a sampled softmax (a dense block of a large catalogue does not fit)."""
        size = self.config.batch_size
        for start in range(0, len(order), size):
            rows = x_all[np.sort(order[start : start + size])]
            yield binary_rows_tensor(rows, self.device) if self.sampling else csr_rows_to_dense(rows, self.device)

    @property
    def sampling(self) -> bool:
        """Whether the fit in progress trains on a sampled softmax."""
        return self._sampler is not None

    def item_sampler(self, train: Interactions) -> ItemSampler | None:
        """The proposal of a sampled softmax when this config and catalogue call for one, else None."""
        config = self.config
        if not isinstance(config, SampledSoftmaxConfig) or not config.samples_softmax(train.n_items):
            return None
        counts = np.bincount(train.binary().indices, minlength=train.n_items)
        return ItemSampler(counts, config.proposal, self.device)

    def optimise(
        self,
        x_all: sp.csr_matrix,
        order: np.ndarray,
        optimizers: Sequence[torch.optim.Optimizer],
        loss_of: Callable[[torch.Tensor], torch.Tensor],
    ) -> float:
        """One pass of updates over the users in `order` with `loss_of(batch)`; returns the mean loss.
        Gradients of every parameter are cleared, so only the given optimizers' parameters ever move."""
        assert self.net is not None
        total = 0.0
        for batch in self.batches(x_all, order):
            with self.autocast():
                loss = loss_of(batch)
            self.net.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            self._step += 1
            total += float(loss.detach()) * batch.shape[0]
        return total / max(len(order), 1)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on CUDA (no loss scaling needed), nothing on CPU."""
        if str(self.device).startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _fit(self, train: Interactions, options: FitOptions) -> None:
        self._sampler = self.item_sampler(train)
        if self._sampler is not None:
            log.info("%s trains on a sampled softmax (%d items)", self.name, train.n_items)
        try:
            self._fit_network(train, options)
        finally:
            self._sampler = None

    def _fit_network(self, train: Interactions, options: FitOptions) -> None:
        x_all = train.binary()
        rows = train.users_with_history()
        if isinstance(self.config, ItemWidthConfig) and options.warm_start is None:
            self.config = self.config.for_catalogue(train.n_items)
        self.net = self.initial_network(train.n_items, options.seed, train.n_users)
        self.warm_started = options.warm_start is not None
        if options.warm_start is not None:
            self._warm_start(options.warm_start)
        epochs = self.config.finetune_epochs if self.warm_started else self.config.epochs
        optimizers = self._optimizers()
        self._step, first_epoch = 0, 0
        best_score, self.best_epoch, best_state = -1.0, 0, None
        self.training_log = []
        checkpoint = Path(options.checkpoint_dir) / CHECKPOINT_FILE if options.checkpoint_dir else None
        fingerprint = self._fingerprint(train, options)
        if checkpoint is not None and checkpoint.exists():
            saved = torch.load(checkpoint, map_location=self.device, weights_only=True)
            if saved["fingerprint"] == fingerprint:
                self.net.load_state_dict(saved["net"])
                for name, opt in optimizers.items():
                    opt.load_state_dict(saved["optimizers"][name])
                first_epoch, self._step = int(saved["epoch"]), int(saved["step"])
                best_score, self.best_epoch = float(saved["best_score"]), int(saved["best_epoch"])
                best_state = saved["best_state"] or None
                self.training_log = [dict(e) for e in saved["log"]]
                log.info("%s resumes from %s after epoch %d", self.name, checkpoint, first_epoch)
            else:
                log.warning("%s ignores checkpoint %s: it belongs to another training run", self.name, checkpoint)
        stopped = first_epoch > 0 and self._should_stop(options.validation)
        # seconds count on from a resumed checkpoint's, so the log says how long training took, not when it restarted
        started = time.perf_counter() - (self.training_log[-1]["seconds"] if self.training_log else 0.0)
        with torch.random.fork_rng(devices=[]):
            for epoch in range(first_epoch, epochs):
                if stopped:
                    break
                # Each epoch's order and noise come from (seed, epoch), so a resumed run repeats the same updates.
                torch.manual_seed(options.seed * 100_003 + epoch)
                order = np.random.default_rng([options.seed, epoch]).permutation(rows)
                self._seed, self._epoch = options.seed, epoch
                self.net.train()
                epoch_started = time.perf_counter()
                entry: dict[str, float] = {"epoch": epoch + 1, **self._train_epoch(x_all, order, optimizers)}
                entry["train_seconds"] = time.perf_counter() - epoch_started  # this epoch's updates alone
                entry["updates"] = self._step  # optimizer updates so far (early stopping's patience counts them)
                if options.validation is not None:
                    entry["val_ndcg"] = self._validation_ndcg(options.validation)
                    if entry["val_ndcg"] > best_score:
                        best_score, self.best_epoch = entry["val_ndcg"], epoch + 1
                        best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                entry["seconds"] = time.perf_counter() - started  # training and validation so far
                self.training_log.append(entry)
                log.info("%s", self._progress_line(entry, epochs, options.validation))
                if options.validation is not None and options.validation.on_epoch is not None:
                    options.validation.on_epoch(epoch + 1, entry["val_ndcg"])
                stopped = self._should_stop(options.validation)
                if checkpoint is not None:
                    self._save_checkpoint(checkpoint, fingerprint, epoch + 1, optimizers, best_score, best_state)
        if best_state is not None:
            self.net.load_state_dict(best_state)  # the best-validation epoch's weights
        else:
            self.best_epoch = len(self.training_log)
        self.net.eval()
        self.expert = None
        if self._wants_expert(train.n_items):
            self._fit_expert(train, options)

    def _wants_expert(self, n_items: int) -> bool:
        """`linear_expert` None or true: on; false: off."""
        return getattr(self.config, "linear_expert", False) is not False

    def _linear_model(self, n_items: int, l2: float) -> Recommender:
        """The untrained expert for `n_items` items: EASE up to `expert_max_items`, SANSA above (no items^2)."""
        from genrec_core.models.ease import EASEConfig
        from genrec_core.models.ease.model import EASE
        from genrec_core.models.sansa import SANSAConfig
        from genrec_core.models.sansa.model import SANSA

        if n_items <= self.config.expert_max_items:
            return EASE(EASEConfig(l2=l2, max_items=max(n_items, 1)))
        log.info("%s: the linear expert is SANSA (%d items, above expert_max_items)", self.name, n_items)
        return SANSA(SANSAConfig(l2=l2))

    def _fit_expert(self, train: Interactions, options: FitOptions) -> None:
        validation = options.validation
        l2_grid = (
            [self.config.expert_l2]
            if self.config.expert_l2
            else (EXPERT_L2_GRID if self._searches_l2(train.n_items, validation) else [DEFAULT_EXPERT_L2])
        )
        weight_grid = (
            [self.config.expert_weight]
            if self.config.expert_weight is not None
            else (EXPERT_WEIGHT_GRID if validation is not None else [DEFAULT_EXPERT_WEIGHT])
        )
        best: tuple[float, float] | None = None
        expert_options = FitOptions(seed=options.seed, device=self.device, threads=options.threads)
        for l2 in l2_grid:
            linear = self._linear_model(train.n_items, l2).fit(train, expert_options)
            score = self._validation_ndcg(validation, linear) if validation is not None and len(l2_grid) > 1 else 0.0
            if best is None or score > best[0]:
                best, self.expert = (score, l2), linear
        self.expert_l2 = best[1] if best is not None else None
        self.expert_weight = float(weight_grid[0])
        if validation is not None and len(weight_grid) > 1:
            scores = self._expert_weight_ndcgs(validation, [float(w) for w in weight_grid])
            self.expert_weight = float(weight_grid[int(np.argmax(scores))])  # the first of equals, as a strict `>` scan
        log.info("%s linear expert: l2 %s, weight %s", self.name, self.expert_l2, self.expert_weight)

    def _searches_l2(self, n_items: int, validation: Validation | None) -> bool:
        """Whether the expert's L2 is chosen on validation: for EASE, yes. Each value costs a fit and a validation
        pass of the expert, which for SANSA at a million items are ~2 and ~15 minutes (5,000 users at ~6 users/s
        on one thread), while its validation NDCG moved 1.2% over a 33x range of L2 at 20k items; so above
        `expert_max_items` the expert keeps the default L2 (or `expert_l2`)."""
        return validation is not None and n_items <= self.config.expert_max_items

    @torch.no_grad()
    def _expert_weight_ndcgs(self, validation: Validation, weights: Sequence[float]) -> list[float]:
        """Validation NDCG of the product of experts at each of `weights`, in one pass: a chunk's network and expert
        scores are computed once and combined per weight (the same lists as `_validation_ndcg` at each weight)."""
        from genrec_core.ranking.metrics import evaluation_targets, metrics_for_lists
        from genrec_core.ranking.topk import chunk_rows, masked_top_k

        assert self.net is not None
        self.net.eval()
        history = validation.history_for(self)
        targets = evaluation_targets(history, validation.judged_targets())
        users = np.flatnonzero(np.diff(targets.indptr) > 0)
        sums = [0.0] * len(weights)
        chunk = chunk_rows(history.shape[1])
        k = min(validation.k, history.shape[1])
        for start in range(0, len(users), chunk):
            rows = users[start : start + chunk]
            scores, x = self.network_scores(self.prepare(history[rows], rows))
            log_p, expert = torch.log_softmax(scores, dim=1), self._expert_scores(x)
            seen = history[rows].tocoo()
            seen_rows, seen_cols = (torch.from_numpy(part.astype(np.int64)) for part in (seen.row, seen.col))
            for i, weight in enumerate(weights):
                items, _ = masked_top_k((log_p + weight * expert).float(), seen_rows, seen_cols, k)
                sums[i] += float(metrics_for_lists(items, targets[rows], validation.k)["ndcg"].sum())
        return [total / len(users) if len(users) else 0.0 for total in sums]

    def _progress_line(self, entry: dict[str, float], epochs: int, validation: Validation | None) -> str:
        """One line per epoch: losses, the validation metric and the best so far, seconds, and an ETA (an upper
        bound: the epoch cap, or sooner when early stopping's patience would end the fit first)."""
        epoch = int(entry["epoch"])
        per_epoch = entry["seconds"] / max(epoch, 1)  # seconds run on across a resume
        previous = self.training_log[-2]["seconds"] if len(self.training_log) > 1 else 0.0
        remaining = epochs - epoch
        losses = ", ".join(
            f"{key} {value:.4g}"
            for key, value in entry.items()
            if key not in ("epoch", "val_ndcg", "seconds", "updates", "train_seconds")
        )
        parts = [f"{self.name} epoch {epoch}/{epochs}: {losses}"]
        if validation is not None:
            remaining = min(remaining, self._epochs_of_patience_left(validation, entry))
            best = f"best {self._best_val():.4f} at epoch {self.best_epoch}"
            parts.append(f"val ndcg@{validation.k} {entry['val_ndcg']:.4f} ({best})")
        parts.append(f"{entry['seconds'] - previous:.1f} s")
        parts.append(f"ETA ≤ {max(remaining, 0) * per_epoch:.0f} s")
        return ", ".join(parts)

    def _best_val(self) -> float:
        return max((e.get("val_ndcg", 0.0) for e in self.training_log), default=0.0)

    def _should_stop(self, validation: Validation | None) -> bool:
        if validation is None or not self.training_log:
            return False
        return self._epochs_of_patience_left(validation, self.training_log[-1]) <= 0

    def _epochs_of_patience_left(self, validation: Validation, entry: dict[str, float]) -> int:
        """Epochs until early stopping ends the fit if the score does not improve: `patience` epochs and
        `patience_updates` optimizer updates since the best epoch must both have passed, and the config's
        `min_epochs` (a GAN's) must have run."""
        epochs_left = validation.patience - (int(entry["epoch"]) - self.best_epoch)
        epochs_left = max(epochs_left, int(getattr(self.config, "min_epochs", 0)) - int(entry["epoch"]))
        if validation.patience_updates <= 0 or self.best_epoch < 1:
            return epochs_left
        since_best = entry.get("updates", 0) - self.training_log[self.best_epoch - 1].get("updates", 0)
        per_epoch = max(entry.get("updates", 0) / max(int(entry["epoch"]), 1), 1.0)
        updates_left = math.ceil((validation.patience_updates - since_best) / per_epoch)
        return max(epochs_left, updates_left)

    def _fingerprint(self, train: Interactions, options: FitOptions) -> str:
        x = train.binary()
        digest = hashlib.sha256()
        for part in (x.indptr, x.indices, *([train.ordered().data] if self.sequential else [])):
            digest.update(np.ascontiguousarray(part).tobytes())
        digest.update(
            json.dumps(
                [self.name, self.config_dict(), options.seed, self.warm_started, options.validation is not None],
                sort_keys=True,
            ).encode()
        )
        return digest.hexdigest()

    def _save_checkpoint(
        self,
        path: Path,
        fingerprint: str,
        epoch: int,
        optimizers: dict[str, torch.optim.Optimizer],
        best_score: float,
        best_state: dict[str, torch.Tensor] | None,
    ) -> None:
        """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
        assert self.net is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(
            {
                "fingerprint": fingerprint,
                "epoch": epoch,
                "step": self._step,
                "net": self.net.state_dict(),
                "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
                "best_score": best_score,
                "best_epoch": self.best_epoch,
                "best_state": best_state or {},
                "log": self.training_log,
            },
            buffer,
        )
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(buffer.getvalue())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:  # e.g. the checkpoint disk is full: stop loudly; the last good checkpoint stays
            tmp.unlink(missing_ok=True)
            raise OSError(
                exc.errno,
                f"cannot write the training checkpoint {path} after epoch {epoch} "
                f"({exc.strerror}); free space or point checkpoint_dir elsewhere",
            ) from exc

    def _warm_start(self, previous: Recommender) -> None:
        if type(previous) is not type(self):
            raise ValueError(f"{self.name}: cannot warm-start from a {previous.name} model")
        assert self.net is not None and isinstance(previous, NeuralRecommender) and previous.net is not None
        grown = grow_state({k: v.to(self.device) for k, v in previous.net.state_dict().items()}, self.net.state_dict())
        self.net.load_state_dict(grown)
        log.info("%s warm-started from %d to %d items", self.name, previous.n_items, self.n_items)

    def refit_expert(self, train: Interactions, options: FitOptions | None = None) -> None:
        """Refit the linear expert, with the L2 and weight already chosen, on `train` (e.g. the full
        training set once validation has done its job); the network is left as it is."""
        if self.expert is None:
            raise RuntimeError(f"{self.name}: no linear expert to refit")
        if train.n_items != self.n_items:
            raise ValueError(f"{self.name}: refit on {train.n_items} items, model has {self.n_items}")
        options = options or FitOptions(device=self.device)
        self.expert = self._linear_model(train.n_items, self.expert_l2 or DEFAULT_EXPERT_L2).fit(train, options)

    def _validation_ndcg(self, validation: Validation, model: Recommender | None = None) -> float:
        from genrec_core.ranking.metrics import evaluate

        assert self.net is not None
        self.net.eval()
        scorer = model or self
        metrics = evaluate(scorer, validation.history_for(scorer), validation.judged_targets(), validation.k)
        return float(metrics[f"ndcg@{validation.k}"] or 0.0)

    def input_rows(self, history: sp.csr_matrix, device: str) -> torch.Tensor:
        if self.normalized_input:
            return normalized_binary_rows(history, device)
        return binary_rows_tensor(history, device)

    def prepare(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> Any:
        """The chunk's input rows as a sparse CPU tensor (pinned when scoring on CUDA)."""
        self._check_history(history)
        x = self.input_rows(history, "cpu")
        return x.pin_memory() if str(self.device).startswith("cuda") else x

    def score(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> torch.Tensor:
        return self.score_prepared(self.prepare(history, users))

    def network_scores(self, prepared: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's scores for a prepared chunk, and its sparse input rows (on the model's device)."""
        assert isinstance(self.net, SparseInputNet)
        x = prepared.to(self.device, non_blocking=True)
        return self.net.score_sparse(x).float(), x

    @torch.no_grad()
    def score_prepared(self, prepared: Any) -> torch.Tensor:
        assert self.net is not None
        self.net.eval()
        scores, x = self.network_scores(prepared)
        if self.expert is None:
            return scores
        return torch.log_softmax(scores, dim=1) + self.expert_weight * self._expert_scores(x)

    def _expert_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The expert's x B for the chunk's sparse input rows (their pattern is the history's)."""
        from genrec_core.models.ease.model import EASE

        assert self.expert is not None
        indices = x.coalesce().indices()
        if isinstance(self.expert, EASE):
            ones = torch.ones(indices.shape[1], device=x.device)
            binary = torch.sparse_coo_tensor(indices, ones, x.shape, check_invariants=False)
            return torch.sparse.mm(binary, self.expert.weights)
        rows, cols = indices.cpu().numpy()
        history = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(x.shape[0], x.shape[1]))
        return self.expert.score(history).to(x.device)

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump()

    def state(self) -> dict[str, torch.Tensor]:
        assert self.net is not None
        state = dict(self.net.state_dict())
        if self.expert is not None:
            expert = self.expert.state()
            if set(expert) == {"weights"}:  # EASE, under the key genrec 0.5 wrote
                state[_EXPERT_KEYS[0]] = expert["weights"]
            else:
                state.update({f"{_SANSA_EXPERT}{key}": value for key, value in expert.items()})
            state[_EXPERT_KEYS[1]] = torch.tensor(self.expert_weight)
            state[_EXPERT_KEYS[2]] = torch.tensor(self.expert_l2 or DEFAULT_EXPERT_L2)
        return state

    def _expert_from_state(self, state: dict[str, torch.Tensor], n_items: int) -> Recommender | None:
        """The expert saved in `state` (its entries removed from it), or None."""
        from genrec_core.models.ease.model import EASE
        from genrec_core.models.sansa.model import SANSA

        config = {"l2": self.expert_l2 or DEFAULT_EXPERT_L2}
        expert: Recommender
        if _EXPERT_KEYS[0] in state:
            expert, config["max_items"] = EASE(), max(n_items, 1)
            saved = {"weights": state.pop(_EXPERT_KEYS[0])}
        elif any(key.startswith(_SANSA_EXPERT) for key in state):
            expert = SANSA()
            saved = {
                key.removeprefix(_SANSA_EXPERT): state.pop(key) for key in list(state) if key.startswith(_SANSA_EXPERT)
            }
        else:
            return None
        expert.device = self.device
        expert.load_state(config, n_items, saved)
        return expert

    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, torch.Tensor]) -> None:
        self.config = self.spec.parse_config(config)
        self.n_items = n_items
        state = dict(state)
        weight = state.pop(_EXPERT_KEYS[1], None)
        l2 = state.pop(_EXPERT_KEYS[2], None)
        self.expert_l2 = float(l2) if l2 is not None else None
        self.expert = self._expert_from_state(state, n_items)
        self.expert_weight = float(weight) if weight is not None else 0.0
        self.net = self._build(n_items).to(self.device)
        self.net.load_state_dict(state)
        self.net.eval()
