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

from genrec_core.contract import SOURCE_FALLBACK, SOURCE_MODEL
from genrec_core.data.interactions import ExtractedData
from genrec_core.errors import DataError
from genrec_core.filters import ItemFilter
from genrec_core.models.base import FitOptions, Recommender
from genrec_core.models.popularity import Popularity
from genrec_core.score import Progress, chunk_to_table, iter_top_k, shard_of
from genrec_core.storage import Storage, join

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreRequest:
    run_date: dt.date
    k: int
    chunk_size: int
    min_history: int
    fallback_days: int
    shard: int = 0
    n_shards: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.shard < self.n_shards:
            raise ValueError(f"shard {self.shard} is outside 0..{self.n_shards - 1}")


def shard_dir(scored_uri: str, n_shards: int) -> str:
    return join(scored_uri, f"shards-{n_shards}")


def _marker(scored_uri: str, shard: int, n_shards: int) -> str:
    return join(shard_dir(scored_uri, n_shards), "_done", f"shard-{shard}.json")


def score_shard(data: ExtractedData, model: Recommender, request: ScoreRequest, item_filter: ItemFilter,
                scored_uri: str, storage: Storage, model_name: str) -> dict[str, Any]:
    """Score one shard's users and write its part files, then its marker; return the marker's counts."""
    full, seen, counts = data.scoring_inputs()
    users = seen.users_with_history()  # every user with an accepted event in the window
    if request.n_shards > 1:
        users = users[shard_of(full.users.ids[users], request.n_shards) == request.shard]
    model_users = users[counts[users] >= request.min_history]
    fallback_users = users[counts[users] < request.min_history]
    eligible = item_filter.eligible(full.items)

    out = join(shard_dir(scored_uri, request.n_shards), f"shard-{request.shard}")
    storage.delete_file(_marker(scored_uri, request.shard, request.n_shards))
    storage.delete_dir(out)
    progress = Progress(len(users), f"scoring shard {request.shard}/{request.n_shards}")
    rows, part = 0, 0
    streams: list[tuple[Recommender, np.ndarray, str]] = [(model, model_users, SOURCE_MODEL)]
    if len(fallback_users):
        fallback = Popularity().fit(data.recent(request.fallback_days), FitOptions(device=model.device))
        streams.append((fallback, fallback_users, SOURCE_FALLBACK))
    try:
        for scorer, group, source in streams:
            for chunk in iter_top_k(scorer, full.matrix, group, request.k, request.chunk_size,
                                    seen=seen.matrix, item_mask=eligible):
                table = chunk_to_table(chunk, full.users, full.items, request.run_date, model_name, source)
                storage.write_table(join(out, f"part-{part:05d}.parquet"), table)
                rows += table.num_rows
                part += 1
                progress.advance(len(chunk.users))
    finally:
        progress.close()
    marker = {"shard": request.shard, "n_shards": request.n_shards, "users": int(len(users)),
              "model_users": int(len(model_users)), "fallback_users": int(len(fallback_users)),
              "rows": rows, "parts": part, "filters": item_filter.summary()}
    storage.write_json(_marker(scored_uri, request.shard, request.n_shards), marker)
    return marker


def staged_parts(storage: Storage, scored_uri: str, n_shards: int) -> list[str]:
    """Part files of a complete set of N shards; refuses a partial set (a missing or mismatched shard)."""
    base = shard_dir(scored_uri, n_shards)
    parts: list[str] = []
    for shard in range(n_shards):
        marker_uri = _marker(scored_uri, shard, n_shards)
        if not storage.exists(marker_uri):
            raise DataError(f"shard {shard} of {n_shards} has not finished scoring ({marker_uri} missing); "
                            "refusing to publish a partial batch")
        marker = storage.read_json(marker_uri)
        files = storage.list_files(join(base, f"shard-{shard}"), ".parquet")
        rows = sum(storage.parquet_rows(f) for f in files)
        if len(files) != marker["parts"] or rows != marker["rows"]:
            raise DataError(f"shard {shard} of {n_shards}: {len(files)} files / {rows} rows on storage, "
                            f"marker says {marker['parts']} / {marker['rows']}")
        parts += files
    return parts


def iter_tables(storage: Storage, parts: list[str]) -> Iterator[pa.Table]:
    for uri in parts:
        yield storage.read_table(uri)
