"""The score stage for one shard: every user with history in the shard gets k eligible, unseen items.

Output: ``{scored_uri}/shards-N/shard-S/part-*.parquet`` and, written last, the marker
``{scored_uri}/shards-N/_done/shard-S.json`` with its counts. Publishing reads a set of
N shards only when all N markers are there and their counts match the files.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from genrec_core.config import Settings
from genrec_core.contract import SOURCE_FALLBACK, SOURCE_MODEL
from genrec_core.data.interactions import ExtractedData
from genrec_core.errors import DataError
from genrec_core.models.base import Recommender
from genrec_core.models.popularity.model import Popularity
from genrec_core.ranking.topk import TopKChunk, chunk_rows, iter_top_k
from genrec_core.score.filters import ItemFilter
from genrec_core.score.tables import Progress, chunk_to_table, shard_of
from genrec_core.storage import Storage, join

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ScoreRequest:
    """One shard's scoring job for D; the fields are named as in the `[score]` settings."""

    run_date: dt.date
    k: int
    chunk_size: int = 0
    chunk_budget_mb: int = 256
    block_users: int = 100_000
    min_history: int = 3
    fallback_days: int = 7
    shard: int = 0
    n_shards: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.shard < self.n_shards:
            raise ValueError(f"shard {self.shard} is outside 0..{self.n_shards - 1}")

    @classmethod
    def for_shard(cls, settings: Settings, run_date: dt.date, shard: int = 0) -> ScoreRequest:
        c = settings.score
        return cls(
            run_date=run_date,
            k=settings.k,
            chunk_size=c.chunk_size,
            chunk_budget_mb=c.chunk_budget_mb,
            block_users=c.block_users,
            min_history=c.min_history,
            fallback_days=c.fallback_days,
            shard=shard,
            n_shards=c.shards,
        )


def shard_dir(scored_uri: str, n_shards: int) -> str:
    return join(scored_uri, f"shards-{n_shards}")


def _marker(scored_uri: str, shard: int, n_shards: int) -> str:
    return join(shard_dir(scored_uri, n_shards), "_done", f"shard-{shard}.json")


def _recent_popularity(data: ExtractedData, first_day: str, n_users: int, n_items: int, block_users: int) -> np.ndarray:
    """Distinct users per item over days >= first_day, one user block at a time."""
    import pyarrow.compute as pc

    counts = np.zeros(n_items, dtype=np.float64)
    for lo in range(0, n_users, block_users):
        hi = min(lo + block_users, n_users)
        table = data.user_rows(lo, hi, ["user_idx", "item_idx", "day", "weight"])
        table = table.filter(
            pc.and_(
                pc.greater_equal(pc.cast(table.column("day"), pa.string()), first_day),
                pc.greater(table.column("weight"), 0),
            )
        )
        pairs = np.unique(table.column("user_idx").to_numpy() * n_items + table.column("item_idx").to_numpy())
        counts += np.bincount(pairs % n_items, minlength=n_items)
    return counts


def score_shard(
    data: ExtractedData,
    model: Recommender,
    request: ScoreRequest,
    item_filter: ItemFilter,
    scored_uri: str,
    storage: Storage,
    model_name: str,
) -> dict[str, Any]:
    """Score one shard's users and write its part files, then its marker; return the marker's counts.

    The window's history is streamed in blocks of `request.block_users` users, so memory is bounded
    by the block and the chunk, not by the number of users.
    """
    users_vocab, items = data.vocabularies()
    n_users, n_items = len(users_vocab), len(items)
    counts = data.user_event_counts()  # accepted events per user; > 0 exactly for users with history
    scored = counts > 0
    if request.n_shards > 1:
        scored &= shard_of(users_vocab.ids, request.n_shards) == request.shard
    fallback_mask = scored & (counts < request.min_history)
    eligible = item_filter.eligible(items)
    chunk_size = chunk_rows(n_items, request.chunk_size, request.chunk_budget_mb)

    fallback = None
    if fallback_mask.any():
        first = (request.run_date - dt.timedelta(days=request.fallback_days - 1)).isoformat()
        fallback = Popularity.from_item_counts(
            _recent_popularity(data, first, n_users, n_items, request.block_users), device=model.device
        )

    out = join(shard_dir(scored_uri, request.n_shards), f"shard-{request.shard}")
    storage.delete_file(_marker(scored_uri, request.shard, request.n_shards))
    storage.delete_dir(out)
    progress = Progress(int(scored.sum()), f"scoring shard {request.shard}/{request.n_shards}")
    rows, part = 0, 0
    try:
        for lo in range(0, n_users, request.block_users):
            hi = min(lo + request.block_users, n_users)
            if not scored[lo:hi].any():
                continue
            history, seen = data.user_block(lo, hi, ordered=model.sequential)
            local = np.flatnonzero(scored[lo:hi])
            is_fallback = fallback_mask[lo:hi][local]
            streams = [(model, local[~is_fallback], SOURCE_MODEL), (fallback, local[is_fallback], SOURCE_FALLBACK)]
            for scorer, group, source in streams:
                if scorer is None or not len(group):
                    continue
                chunks = iter_top_k(
                    scorer, history, group, request.k, chunk_size, seen=seen, item_mask=eligible, first_user=lo
                )
                for chunk in chunks:
                    chunk = TopKChunk(chunk.users + lo, chunk.items, chunk.scores)
                    table = chunk_to_table(chunk, users_vocab, items, request.run_date, model_name, source)
                    storage.write_table(join(out, f"part-{part:05d}.parquet"), table)
                    rows += table.num_rows
                    part += 1
                    progress.advance(len(chunk.users))
    finally:
        progress.close()
    marker = {
        "shard": request.shard,
        "n_shards": request.n_shards,
        "users": int(scored.sum()),
        "model_users": int((scored & ~fallback_mask).sum()),
        "fallback_users": int(fallback_mask.sum()),
        "rows": rows,
        "parts": part,
        "chunk_size": chunk_size,
        "filters": item_filter.summary(),
    }
    storage.write_json(_marker(scored_uri, request.shard, request.n_shards), marker)
    return marker


def staged_parts(storage: Storage, scored_uri: str, n_shards: int) -> list[str]:
    """Part files of a complete set of N shards; refuses a partial set (a missing or mismatched shard)."""
    base = shard_dir(scored_uri, n_shards)
    parts: list[str] = []
    for shard in range(n_shards):
        marker_uri = _marker(scored_uri, shard, n_shards)
        if not storage.exists(marker_uri):
            raise DataError(
                f"shard {shard} of {n_shards} has not finished scoring ({marker_uri} missing); "
                "refusing to publish a partial batch"
            )
        marker = storage.read_json(marker_uri)
        files = storage.list_files(join(base, f"shard-{shard}"), ".parquet")
        rows = sum(storage.parquet_rows(f) for f in files)
        if len(files) != marker["parts"] or rows != marker["rows"]:
            raise DataError(
                f"shard {shard} of {n_shards}: {len(files)} files / {rows} rows on storage, "
                f"marker says {marker['parts']} / {marker['rows']}"
            )
        parts += files
    return parts


def iter_tables(storage: Storage, parts: list[str]) -> Iterator[pa.Table]:
    for uri in parts:
        yield storage.read_table(uri)
