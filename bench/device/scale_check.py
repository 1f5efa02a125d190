"""Issue #22's device check: one Mult-VAE training epoch at a million items on the sampled softmax, then
every user scored, under bf16 autocast on CUDA. Prints one JSON object: epoch seconds, users/s (and a
bare matmul + top-k floor: the decoder's last product at the same sizes), peak GPU memory.

Run where a GPU is lent (the planted data is generated there, nothing to carry):

    PYTHONUNBUFFERED=1 python bench/device/scale_check.py --items 1000000 --users 200000

On a CPU it runs too (`--device cpu`, smaller sizes), which is how it is tried before a lease.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from genrec_core.dev.benchmarks.quality_bench import interactions_of
from genrec_core.dev.benchmarks.scale_bench import draw
from genrec_core.models.base import FitOptions
from genrec_core.models.mult_vae import MultVAEConfig
from genrec_core.models.mult_vae.model import MultVAE
from genrec_core.ranking.topk import chunk_rows, iter_top_k


def _floor(items: int, width: int, users: int, chunk: int, device: str, k: int) -> float:
    """Bare [chunk, width] @ [width, items] (the decoder's last product) in bf16 on CUDA + torch.topk."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    latent = torch.randn(chunk, width, device=device, dtype=dtype)
    table = torch.randn(width, items, device=device, dtype=dtype)
    torch.topk((latent @ table).float(), k, dim=1)
    _sync(device)
    started = time.perf_counter()
    for start in range(0, users, chunk):
        torch.topk((latent[: min(chunk, users - start)] @ table).float(), k, dim=1)
    _sync(device)
    return users / (time.perf_counter() - started)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--events-per-user", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=600)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-mb", type=int, default=2048, help="score chunk budget")
    args = parser.parse_args()
    k = 20
    started = time.perf_counter()
    data = draw(args.items, args.users, args.events_per_user)
    history = data.history
    draw_seconds = time.perf_counter() - started
    config = MultVAEConfig(hidden_dim=args.hidden, epochs=1, linear_expert=False)  # the default threshold samples
    model = MultVAE(config).fit(interactions_of(data.fit), FitOptions(seed=0, device=args.device))
    epoch_seconds = model.training_log[0]["train_seconds"]
    users = np.flatnonzero(np.diff(history.indptr) > 0)
    chunk = chunk_rows(args.items, 0, args.budget_mb)
    _sync(args.device)
    started = time.perf_counter()
    scored = sum(len(c.users) for c in iter_top_k(model, history, users, k, chunk))
    _sync(args.device)
    users_per_s = scored / (time.perf_counter() - started)
    floor = _floor(args.items, args.hidden, min(len(users), 20 * chunk), chunk, args.device, k)
    cuda = args.device == "cuda"
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name() if cuda else "cpu",
                "items": args.items,
                "users": args.users,
                "fit_interactions": int(data.fit.nnz),
                "hidden_dim": args.hidden,
                "sampled_softmax": config.samples_softmax(args.items),
                "draw_seconds": round(draw_seconds, 1),
                "epoch_seconds": round(epoch_seconds, 2),
                "scoring_users_per_s": round(users_per_s, 1),
                "floor_users_per_s": round(floor, 1),
                "scoring_vs_floor": round(users_per_s / floor, 3),
                "chunk": chunk,
                "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            }
        )
    )


if __name__ == "__main__":
    main()
