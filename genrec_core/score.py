"""Chunked top-k for many users: score a chunk, mask what each user has seen, take top-k.

Memory is bounded by `chunk_size x n_items`, never by the number of users.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from genrec_core.data.interactions import Vocabulary
from genrec_core.models.base import Recommender


@dataclass(frozen=True)
class TopKChunk:
    """Top-k for a chunk of users; `items` is -1 (score -inf) where fewer than k items were eligible."""

    users: np.ndarray  # [n] user indices
    items: np.ndarray  # [n, k] item indices, best first
    scores: np.ndarray  # [n, k] float32


def iter_top_k(model: Recommender, history: sp.csr_matrix, users: np.ndarray, k: int,
               chunk_size: int, seen: sp.csr_matrix | None = None) -> Iterator[TopKChunk]:
    """Yield top-k chunks for `users` (row indices), never recommending an item in `seen` (default: `history`).

    `history` is what the model encodes; `seen` may hold more (e.g. low ratings that are not positive feedback).
    """
    import torch

    seen = history if seen is None else seen
    k_eff = min(k, history.shape[1])
    for start in range(0, len(users), chunk_size):
        rows = users[start:start + chunk_size]
        scores = model.score(history[rows]).float()
        coo = seen[rows].tocoo()
        if coo.nnz:
            r = torch.from_numpy(coo.row.astype(np.int64)).to(scores.device)
            c = torch.from_numpy(coo.col.astype(np.int64)).to(scores.device)
            scores[r, c] = float("-inf")
        top = torch.topk(scores, k_eff, dim=1, sorted=True)
        items = top.indices.cpu().numpy().astype(np.int64)
        values = top.values.cpu().numpy().astype(np.float32)
        items[~np.isfinite(values)] = -1
        yield TopKChunk(rows, items, values)


def chunk_to_table(chunk: TopKChunk, users: Vocabulary, items: Vocabulary, run_date: dt.date,
                   model_name: str) -> pa.Table:
    """Long format rows in the output contract (run_date, user_id, rank, item_id, score, model)."""
    n, k = chunk.items.shape
    valid = chunk.items >= 0
    user_pos, rank0 = np.nonzero(valid)
    item_idx = chunk.items[valid]
    return pa.table({
        "run_date": pa.array(np.full(len(item_idx), np.datetime64(run_date.isoformat(), "D")), pa.date32()),
        "user_id": pa.array(users.ids[chunk.users[user_pos]].tolist(), pa.string()),
        "rank": pa.array((rank0 + 1).astype(np.int32), pa.int32()),
        "item_id": pa.array(items.ids[item_idx].tolist(), pa.string()),
        "score": pa.array(chunk.scores[valid].astype(np.float64), pa.float64()),
        "model": pa.array([model_name] * len(item_idx), pa.string()),
    })
