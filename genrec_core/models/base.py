"""The protocol every model follows: fit on an interaction matrix, score a chunk of users, save/load.

Masking seen items, filters and top-k live in the scorer, not in models. Artifacts
are a `config.json` (model name, typed config, shape) beside a weights file that
loads with ``torch.load(weights_only=True)``: nothing is ever unpickled.
"""

from __future__ import annotations

import io
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from genrec_core.data.interactions import Interactions
from genrec_core.models.spec import ModelConfig, ModelSpec
from genrec_core.storage import Storage, join

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"


@dataclass(frozen=True)
class Validation:
    """Held-out interactions for early stopping: lists are built from `history`, judged against `targets`."""

    history: sp.csr_matrix
    targets: sp.csr_matrix
    k: int = 20
    patience: int = 10
    # ...and at least this many optimizer updates without a better score (0: epochs only). An epoch of a small
    # data set is a few updates, so its validation curve is noisy per epoch and patience in epochs alone ends
    # slow learners early; counted in updates it means the same on every data size.
    patience_updates: int = 0
    # called after each epoch's validation with (epoch, NDCG@k); it may raise to abandon the fit (pruning)
    on_epoch: Callable[[int, float], None] | None = None
    order: sp.csr_matrix | None = None  # the history's time order (Interactions.order), for a sequential model
    # judge early stopping on at most this many users with targets (0: all), a fixed sample: each validation
    # ranks every item for every judged user, which at a million items costs more than the epoch's updates
    max_users: int = 0

    @classmethod
    def between(cls, history: Interactions, targets: Interactions, **settings: Any) -> Validation:
        """Validation of lists built from `history` (with its time order when it has one) against `targets`."""
        return cls(history.matrix, targets.matrix, order=history.order, **settings)

    def judged_targets(self) -> sp.csr_matrix:
        """`targets` with only the judged users' rows kept: all of them, or a seeded sample of `max_users`."""
        users = np.flatnonzero(np.diff(self.targets.indptr) > 0)
        if self.max_users <= 0 or len(users) <= self.max_users:
            return self.targets
        kept = np.zeros(self.targets.shape[0], dtype=self.targets.dtype)
        kept[np.random.default_rng(0).choice(users, self.max_users, replace=False)] = 1
        judged = sp.csr_matrix(sp.diags(kept) @ self.targets)
        judged.eliminate_zeros()
        return judged

    def history_for(self, model: Recommender) -> sp.csr_matrix:
        """The history rows `model` scores from: the time order for a sequential model, else `history`."""
        if not model.sequential:
            return self.history
        if self.order is None:
            raise ValueError(f"{model.name}: the validation history carries no time order (Validation.between)")
        return self.order


@dataclass(frozen=True)
class FitOptions:
    """Run-time options for training: where and how reproducibly, never what."""

    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    validation: Validation | None = None
    warm_start: Recommender | None = None  # fine-tune from this fitted model (same kind, fewer or equal items)
    checkpoint_dir: str | None = None  # local directory: save after every epoch, resume from what is there


class Recommender(ABC):
    """Base class: a fixed public `fit` that checks and times, around a per-model `_fit`."""

    name: ClassVar[str]
    spec: ClassVar[ModelSpec]  # what the model tells the rest of the system (genrec_core/models/spec.py)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:
            cls.name = cls.spec.name

    def __init__(self, config: ModelConfig | None = None) -> None:
        """`config`: the model's typed settings section (None for a model without settings)."""
        self.n_items: int | None = None
        self.device = "cpu"
        self.fit_seconds: float | None = None
        self.training_log: list[dict[str, float]] = []  # per epoch, for iterative models

    @property
    def sequential(self) -> bool:
        """Whether the model reads the order of a history (its rows from `history_of`)."""
        return self.spec.sequential

    def history_of(self, data: Interactions) -> sp.csr_matrix:
        """The history rows this model scores from: the weights, or the time order for a sequential model."""
        return data.ordered() if self.sequential else data.matrix

    def fit(self, train: Interactions, options: FitOptions | None = None) -> Self:
        options = options or FitOptions()
        if train.matrix.nnz == 0:
            raise ValueError(f"{self.name}: cannot fit on an empty interaction matrix")
        import torch

        if options.threads:
            torch.set_num_threads(options.threads)
        self.device = options.device
        self.n_items = train.n_items
        start = time.perf_counter()
        self._fit(train, options)
        self.fit_seconds = time.perf_counter() - start
        log.info(
            "%s fitted on %d users x %d items (%d nnz) in %.1fs",
            self.name,
            train.n_users,
            train.n_items,
            train.matrix.nnz,
            self.fit_seconds,
        )
        return self

    @abstractmethod
    def _fit(self, train: Interactions, options: FitOptions) -> None: ...

    @abstractmethod
    def score(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> torch.Tensor:
        """Scores [rows, n_items] (float32, on the model's device) for a chunk of users' history rows.

        `users`: the rows' indices in the user vocabulary. Models that score from the history alone
        ignore it; one that scores known users by identity (item-based CFGAN) requires it."""

    def prepare(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> Any:
        """CPU-side work for a chunk (runs one chunk ahead on a helper thread); default: none."""
        return history

    def score_prepared(self, prepared: Any) -> torch.Tensor:
        """`score` of what `prepare` returned."""
        return self.score(prepared)

    @abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """The model's typed config as plain JSON values."""

    @abstractmethod
    def state(self) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, torch.Tensor]) -> None: ...

    def _check_history(self, history: sp.csr_matrix) -> None:
        if self.n_items is None:
            raise RuntimeError(f"{self.name}: score() called before fit() or load()")
        if history.shape[1] != self.n_items:
            raise ValueError(f"{self.name}: history has {history.shape[1]} item columns, model has {self.n_items}")

    def save(self, uri: str, storage: Storage) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu().contiguous() for k, v in self.state().items()}, buffer)
        storage.write_bytes(join(uri, WEIGHTS_FILE), buffer.getvalue())
        storage.write_json(
            join(uri, CONFIG_FILE),
            {
                "model": self.name,
                "n_items": self.n_items,
                "config": self.config_dict(),
                "fit_seconds": self.fit_seconds,
            },
        )
