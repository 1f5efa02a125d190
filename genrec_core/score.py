"""Chunked top-k for many users: score a chunk, mask seen and ineligible items, take top-k.

Memory is bounded by `chunk_size x n_items`, never by the number of users. Ties are
broken exactly and deterministically (higher score first, then lower item index), so
any chunk size or shard count gives the same lists.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from genrec_core.contract import SOURCE_MODEL
from genrec_core.data.interactions import Vocabulary
from genrec_core.models.base import Recommender

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopKChunk:
    """Top-k for a chunk of users; `items` is -1 (score -inf) where fewer than k items were eligible."""

    users: np.ndarray  # [n] user indices
    items: np.ndarray  # [n, k] item indices, best first
    scores: np.ndarray  # [n, k] float32


def _keyed_top_k(scores: "torch.Tensor", k: int) -> "torch.Tensor":
    """Exact top-k indices via one int64 key per score: order-preserving float bits, then inverted item index."""
    import torch

    bits = scores.view(torch.int32)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: flip magnitude bits
    n_items = scores.shape[1]
    tiebreak = (n_items - 1) - torch.arange(n_items, device=scores.device, dtype=torch.int64)
    keys = (ordered.to(torch.int64) << 32) | tiebreak
    return torch.topk(keys, k, dim=1, sorted=True).indices


def chunk_rows(n_items: int, chunk_size: int = 0, budget_mb: int = 256) -> int:
    """Users per chunk: `chunk_size` when set, else as many as fit a float32 [rows, n_items] in `budget_mb`."""
    if chunk_size > 0:
        return chunk_size
    return max(1, (budget_mb * 1024 * 1024) // (4 * max(n_items, 1)))


def deterministic_top_k(scores: "torch.Tensor", k: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(indices, values) of the k best items per row; ties go to the lower item index. NaN counts as -inf.

    A float `topk` of k+1 picks the lists: a row has a tie at the boundary exactly when its
    (k+1)-th score equals its k-th, and only such rows are redone with exact int64 keys.
    Each list is then ordered by (score desc, item asc). Everything but the one `topk` pass
    works on the small [rows, k+1] result.
    """
    import torch

    scores = scores.float()
    n_items = scores.shape[1]
    if k >= n_items:  # the whole (small) catalogue: exact keys for every row
        clean = scores.masked_fill(torch.isnan(scores), float("-inf"))
        indices = _keyed_top_k(clean, k)
        return indices, torch.gather(clean, 1, indices)
    values, indices = torch.topk(scores, k + 1, dim=1, sorted=True)
    if torch.isnan(values).any():  # topk ranks NaN first, so any NaN in a row shows up here
        scores = scores.masked_fill(torch.isnan(scores), float("-inf"))
        values, indices = torch.topk(scores, k + 1, dim=1, sorted=True)
    tied = torch.nonzero(values[:, k] == values[:, k - 1]).flatten()
    values, indices = values[:, :k].contiguous(), indices[:, :k].contiguous()
    if len(tied):
        indices[tied] = _keyed_top_k(scores[tied], k)
        values[tied] = torch.gather(scores[tied], 1, indices[tied])
    by_item = torch.argsort(indices, dim=1)
    indices, values = torch.gather(indices, 1, by_item), torch.gather(values, 1, by_item)
    by_score = torch.argsort(values, dim=1, descending=True, stable=True)
    return torch.gather(indices, 1, by_score), torch.gather(values, 1, by_score)


def iter_top_k(model: Recommender, history: sp.csr_matrix, users: np.ndarray, k: int, chunk_size: int,
               seen: sp.csr_matrix | None = None, item_mask: np.ndarray | None = None) -> Iterator[TopKChunk]:
    """Yield top-k chunks for `users` (row indices).

    `history` is what the model encodes; items in `seen` (default: `history`) are never
    recommended; `item_mask` (bool per item) marks the eligible items (default: all).
    The next chunk's inputs are prepared on a helper thread while this one computes.
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch

    seen = history if seen is None else seen
    k_eff = min(k, history.shape[1])
    starts = list(range(0, len(users), chunk_size))
    ineligible = None

    def prepare(start: int) -> tuple[np.ndarray, Any, torch.Tensor, torch.Tensor]:
        rows = users[start:start + chunk_size]
        coo = seen[rows].tocoo()
        return (rows, model.prepare(history[rows]), torch.from_numpy(coo.row.astype(np.int64)),
                torch.from_numpy(coo.col.astype(np.int64)))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="genrec-prefetch") as pool:
        pending = pool.submit(prepare, starts[0]) if starts else None
        for i in range(len(starts)):
            rows, prepared, seen_rows, seen_cols = pending.result()
            pending = pool.submit(prepare, starts[i + 1]) if i + 1 < len(starts) else None
            scores = model.score_prepared(prepared).float()
            if item_mask is not None and ineligible is None:
                ineligible = torch.from_numpy(~item_mask).to(scores.device)
            if ineligible is not None:
                scores.masked_fill_(ineligible, float("-inf"))
            if len(seen_rows):
                scores[seen_rows.to(scores.device), seen_cols.to(scores.device)] = float("-inf")
            top, values = deterministic_top_k(scores, k_eff)
            del scores  # free the chunk's score matrix before the next one is computed
            items = top.cpu().numpy().astype(np.int64)
            values = values.cpu().numpy().astype(np.float32)
            items[~np.isfinite(values)] = -1
            yield TopKChunk(rows, items, values)


def chunk_to_table(chunk: TopKChunk, users: Vocabulary, items: Vocabulary, run_date: dt.date,
                   model_name: str, source: str = SOURCE_MODEL) -> pa.Table:
    """Long format rows in the output contract (run_date, user_id, rank, item_id, score, model, source)."""
    valid = chunk.items >= 0
    user_pos, rank0 = np.nonzero(valid)
    item_idx = chunk.items[valid]
    n = len(item_idx)
    return pa.table({
        "run_date": pa.array(np.full(n, np.datetime64(run_date.isoformat(), "D")), pa.date32()),
        "user_id": pa.array(users.ids[chunk.users[user_pos]].tolist(), pa.string()),
        "rank": pa.array((rank0 + 1).astype(np.int32), pa.int32()),
        "item_id": pa.array(items.ids[item_idx].tolist(), pa.string()),
        "score": pa.array(chunk.scores[valid].astype(np.float64), pa.float64()),
        "model": pa.array([model_name] * n, pa.string()),
        "source": pa.array([source] * n, pa.string()),
    })


def shard_of(user_ids: np.ndarray, n_shards: int) -> np.ndarray:
    """Shard (0..n_shards-1) of each user id by range of a stable 64-bit hash of the id."""
    import pandas as pd

    if n_shards < 1:
        raise ValueError("n_shards must be >= 1")
    hashes = pd.util.hash_array(np.asarray(user_ids, dtype=object), categorize=False)
    return ((hashes >> np.uint64(32)) * np.uint64(n_shards) >> np.uint64(32)).astype(np.int64)


class Progress:
    """A progress bar on an interactive terminal; otherwise a log line (users/s, ETA) every `every_s`."""

    def __init__(self, total: int, label: str, every_s: float = 30.0) -> None:
        self.total, self.label, self.every_s = total, label, every_s
        self.done = 0
        self.started = self.last_log = time.perf_counter()
        self._bar = None
        if sys.stderr.isatty():
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def advance(self, users: int) -> None:
        self.done += users
        now = time.perf_counter()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif now - self.last_log >= self.every_s:
            self.last_log = now
            log.info("%s", self.line())

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return f"{self.label}: {self.done}/{self.total} users, {rate:,.0f} users/s, ETA {eta:,.0f}s"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        log.info("%s (done)", self.line())
