"""SANSA through the `sansa` package (RecSys 2023's authors' implementation).

Scores = (X W1) W2 + X with X the binary history rows and W1, W2 the two sparse factors sansa returns:
W1 W2 approximates -P diagMat(1 / diag(P)) with P the inverse of X^T X + l2 I, which is EASE's B - I.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from genrec_core.data.interactions import Interactions
from genrec_core.models.base import FitOptions, Recommender
from genrec_core.models.sansa import SPEC, SANSAConfig
from genrec_core.models.torch_utils import binary_csr

_FACTORS = ("w1", "w2")
_PARTS = ("indptr", "indices", "data")


class SANSA(Recommender):
    spec = SPEC

    def __init__(self, config: SANSAConfig | None = None) -> None:
        super().__init__()
        self.config = config or SANSAConfig()
        self.factors: tuple[sp.csr_matrix, sp.csr_matrix] | None = None

    def _fit(self, train: Interactions, options: FitOptions) -> None:
        x = train.binary().astype(np.float32)
        seen = np.flatnonzero(x.getnnz(axis=0))
        w1, w2 = self._factorise(sp.csr_matrix(x[:, seen]))
        self.factors = (_spread(w1, seen, train.n_items), _spread(w2, seen, train.n_items))

    def _factorise(self, x: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """sansa's two factors for a history whose every item has an event.

        An item without one has no diagonal in the Gram matrix, and sansa's incomplete factorisation (1.1.0) then
        scans column j from the matrix's first entry instead of its own: minutes instead of a second at 100k items,
        and entries of other columns added into j. Such items get zero weights, as in EASE, after the fit."""
        sansa = _import_sansa()
        c = self.config
        n_items = x.shape[1]
        incomplete = c.factorizer_for(n_items) == "icf"
        factorizer = sansa.ICFGramianFactorizerConfig() if incomplete else sansa.CHOLMODGramianFactorizerConfig()
        model = sansa.SANSA(
            sansa.SANSAConfig(
                l2=c.l2 / _mean_item_count(x) if incomplete else c.l2,
                weight_matrix_density=c.density(n_items),
                gramian_factorizer_config=factorizer,
                lower_triangle_inverter_config=sansa.UMRUnitLowerTriangleInverterConfig(
                    scans=c.scans, finetune_steps=c.finetune_steps
                ),
            )
        )
        if c.scans == 0 and c.finetune_steps == 0:
            model.inverter = _SchultzStep()
        with _level("sansa", logging.WARNING), _objects_frozen():
            model.fit(x)
        w1, w2 = model.weights
        return sp.csr_matrix(w1, dtype=np.float32), sp.csr_matrix(w2, dtype=np.float32)

    @torch.no_grad()
    def score(self, history: sp.csr_matrix, users: np.ndarray | None = None) -> torch.Tensor:
        """x W1 W2 + x (W1 W2 = B - I: -1 on B's zero diagonal). The second product is most of the cost (at a
        million items W2's rows of popular items hold tens of thousands of entries); its rows are split over
        torch's thread count (scipy's sparse products release the GIL)."""
        self._check_history(history)
        assert self.factors is not None
        x = binary_csr(history)
        w1, w2 = self.factors
        hidden = (x @ w1).tocsr()
        out = np.zeros(x.shape, dtype=np.float32)
        bounds = np.linspace(0, x.shape[0], min(torch.get_num_threads(), x.shape[0]) + 1).astype(int)

        def block(part: int) -> None:
            lo, hi = bounds[part], bounds[part + 1]
            (hidden[lo:hi] @ w2 + x[lo:hi]).toarray(out=out[lo:hi])

        parts = range(len(bounds) - 1)
        if len(parts) > 1:
            with ThreadPoolExecutor(len(parts), thread_name_prefix="genrec-sansa") as pool:
                list(pool.map(block, parts))
        else:
            for part in parts:
                block(part)
        return torch.from_numpy(out).to(self.device)

    @property
    def stored_weights(self) -> int:
        """Entries kept in the two factors together."""
        assert self.factors is not None
        return int(sum(f.nnz for f in self.factors))

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump()

    def state(self) -> dict[str, torch.Tensor]:
        assert self.factors is not None
        return {
            f"{name}.{part}": torch.from_numpy(np.ascontiguousarray(getattr(factor, part)))
            for name, factor in zip(_FACTORS, self.factors)
            for part in _PARTS
        }

    def load_state(self, config: dict[str, Any], n_items: int, state: dict[str, torch.Tensor]) -> None:
        self.config = SANSAConfig(**config)
        self.n_items = n_items
        w1, w2 = (
            sp.csr_matrix(tuple(state[f"{name}.{part}"].numpy() for part in reversed(_PARTS)), shape=(n_items, n_items))
            for name in _FACTORS
        )
        self.factors = (w1, w2)


class _SchultzStep:
    """L^-1 ~ 2I - L for sansa's unit lower triangular L: its inverter's starting point, used alone when no UMR
    sweep refines it. sansa's inverter would also form the residual I - L M only to log its norm: a matrix of up
    to weights_per_item^2 entries per item, most of a 100k-item fit's 9.7 GB."""

    def invert(self, lower: sp.csc_matrix) -> sp.csc_matrix:
        inverse = lower.copy()
        inverse.setdiag(inverse.diagonal() - 2.0)
        return -inverse


def _mean_item_count(x: sp.csr_matrix) -> float:
    """The mean diagonal of the Gram matrix of binary `x`. Before an incomplete factorisation sansa rescales each
    item of X by the square root of its Gram row's norm, which makes the Gram matrix independent of how many users
    there are; an l2 meant for the raw Gram matrix (EASE's) is divided by this to be independent of it too."""
    return float(x.nnz) / max(x.shape[1], 1)


def _spread(factor: sp.csr_matrix, items: np.ndarray, n_items: int) -> sp.csr_matrix:
    """`factor` over the sub-catalogue `items` as an n_items x n_items matrix, zero elsewhere."""
    entries = factor.tocoo()
    return sp.csr_matrix(
        (entries.data, (items[entries.row], items[entries.col])), shape=(n_items, n_items), dtype=np.float32
    )


def _import_sansa() -> Any:
    """The `sansa` module; its import calls logging.basicConfig(INFO), which must not configure our root logger."""
    root = logging.getLogger()
    placeholder = logging.NullHandler() if not root.handlers else None
    if placeholder is not None:
        root.addHandler(placeholder)  # basicConfig leaves a root logger that has a handler alone
    try:
        import sansa
    finally:
        if placeholder is not None:
            root.removeHandler(placeholder)
    return sansa


@contextlib.contextmanager
def _objects_frozen() -> Iterator[None]:
    """sansa calls gc.collect() between steps; in a process holding torch, Spark and Airflow objects each call
    took over a second. Frozen objects are left out of collections, so the fit's own garbage is what is scanned."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _level(name: str, level: int) -> Iterator[None]:
    """The logger `name` at `level` for a while (sansa logs every step of a fit at INFO)."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
