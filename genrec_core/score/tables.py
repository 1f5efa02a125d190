"""Lists as rows of the output contract, shard assignment of users, and scoring progress."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time

import numpy as np
import pyarrow as pa

from genrec_core.contract import SOURCE_MODEL
from genrec_core.data.interactions import Vocabulary
from genrec_core.ranking.topk import TopKChunk

log = logging.getLogger(__name__)


def chunk_to_table(
    chunk: TopKChunk,
    users: Vocabulary,
    items: Vocabulary,
    run_date: dt.date,
    model_name: str,
    source: str = SOURCE_MODEL,
) -> pa.Table:
    """Long format rows in the output contract (run_date, user_id, rank, item_id, score, model, source)."""
    valid = chunk.items >= 0
    user_pos, rank0 = np.nonzero(valid)
    item_idx = chunk.items[valid]
    n = len(item_idx)
    return pa.table(
        {
            "run_date": pa.array(np.full(n, np.datetime64(run_date.isoformat(), "D")), pa.date32()),
            "user_id": pa.array(users.ids[chunk.users[user_pos]].tolist(), pa.string()),
            "rank": pa.array((rank0 + 1).astype(np.int32), pa.int32()),
            "item_id": pa.array(items.ids[item_idx].tolist(), pa.string()),
            "score": pa.array(chunk.scores[valid].astype(np.float64), pa.float64()),
            "model": pa.array([model_name] * n, pa.string()),
            "source": pa.array([source] * n, pa.string()),
        }
    )


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
