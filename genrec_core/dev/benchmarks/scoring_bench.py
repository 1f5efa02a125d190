"""`genrec bench scoring`: the score stage's users/s against a bare dense matmul + topk loop.

Synthetic catalogue: Zipf item popularity, about `mean_history` items per user. Model:
Mult-VAE 600 hidden / 200 latent with its initial weights (throughput does not depend
on training). Pipeline: the real score stage over an extract on disk (history build,
sparse encoder, decoder, masking, exact top-k, Parquet parts, marker). Floor, in the
same process: the decoder's two dense matmuls + `torch.topk` on pre-built latent
tensors, no I/O; measured on the first `floor_users` users (its cost per user is constant).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import torch

from genrec_core.data.interactions import ExtractedData, Vocabulary
from genrec_core.dev.benchmarks.common import peak_rss_mb
from genrec_core.dev.generate import item_ids, user_ids
from genrec_core.models.mult_vae import MultVAEConfig
from genrec_core.models.mult_vae.model import MultVAE, MultVAENet
from genrec_core.ranking.topk import chunk_rows
from genrec_core.score.filters import ItemFilter
from genrec_core.score.job import ScoreRequest, score_shard
from genrec_core.storage import Storage

RUN_DATE = dt.date(2026, 11, 20)


def _write_extract(root: Path, users: int, items: int, mean_history: int, seed: int) -> None:
    """Daily aggregates + vocabularies in the extract layout, written in user blocks."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    cdf = np.cumsum(popularity / popularity.sum())
    storage = Storage()
    block = 100_000
    for part, start in enumerate(range(0, users, block)):
        n = min(block, users - start)
        counts = 1 + rng.poisson(mean_history - 1, size=n)
        rows = np.repeat(np.arange(start, start + n), counts)
        cols = np.minimum(np.searchsorted(cdf, rng.random(len(rows))), items - 1)
        pairs = np.unique(rows * items + cols)
        storage.write_table(
            str(root / "daily" / f"day={RUN_DATE}" / f"part-{part:05d}.parquet"),
            pa.table(
                {
                    "user_idx": pairs // items,
                    "item_idx": pairs % items,
                    "weight": np.ones(len(pairs), np.float32),
                    "events": np.ones(len(pairs), np.int64),
                }
            ),
        )
    storage.write_table(
        str(root / "vocab" / "users" / "part-0.parquet"), Vocabulary(user_ids(users).astype(object)).to_table()
    )
    storage.write_table(
        str(root / "vocab" / "items" / "part-0.parquet"), Vocabulary(item_ids(items).astype(object)).to_table()
    )
    storage.write_json(str(root / "stats.json"), {"weighting": {}, "kcore": None})


def _model(items: int, seed: int) -> MultVAE:
    model = MultVAE(MultVAEConfig(hidden_dim=600, latent_dim=200))
    model.net = model.initial_network(items, seed)
    model.net.eval()
    model.n_items = items
    return model


@torch.no_grad()
def _floor(model: MultVAE, users: int, k: int, chunk: int) -> float:
    net = cast(MultVAENet, model.net)
    latent = torch.randn(chunk, model.config.latent_dim, generator=torch.Generator().manual_seed(0))
    torch.topk(net.decode(latent), k, dim=1)  # warm-up
    started = time.perf_counter()
    for start in range(0, users, chunk):
        n = min(chunk, users - start)
        torch.topk(net.decode(latent[:n]), k, dim=1)
    return users / (time.perf_counter() - started)


def run(
    users: int,
    items: int,
    k: int = 10,
    chunk: int = 0,
    mean_history: int = 20,
    floor_users: int = 50_000,
    threads: int = 0,
    seed: int = 0,
    budget_mb: int = 256,
) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    root = Path(tempfile.mkdtemp(prefix="genrec-bench-scoring-"))
    try:
        _write_extract(root / "extract", users, items, mean_history, seed)
        model = _model(items, seed)
        chunk = chunk_rows(items, chunk, budget_mb)
        floor = _floor(model, min(users, floor_users), k, chunk)
        storage = Storage()
        data = ExtractedData(str(root / "extract"), RUN_DATE, storage)
        request = ScoreRequest(
            run_date=RUN_DATE, k=k, chunk_size=chunk, min_history=1, fallback_days=7
        )  # chunk: same as the floor
        started = time.perf_counter()
        marker = score_shard(data, model, request, ItemFilter(), str(root / "scored"), storage, "mult_vae")
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    pipeline = marker["users"] / seconds
    return {
        "users": marker["users"],
        "items": items,
        "k": k,
        "chunk_size": chunk,
        "pipeline_users_per_s": round(pipeline),
        "floor_users_per_s": round(floor),
        "ratio": round(pipeline / floor, 3),
        "pipeline_seconds": round(seconds, 1),
        "rows": marker["rows"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "floor_users": min(users, floor_users),
    }
