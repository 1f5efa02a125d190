"""Issue #20's device check: SASRec trained on `ml-1m-sasrec` (the bench's split and settings) under bf16
autocast on CUDA, then every user scored. Prints one JSON object: seconds per epoch, the validation
NDCG@20 reached, test HR@10 / NDCG@10 and scoring users/s.

The shared data does not travel with the working tree: copy the one file into an ignored folder of the
checkout, carry it, and point GENREC_SHARED_DATA at it:

    mkdir -p .device-data/ml-1m-sasrec && cp ../shared/data/ml-1m-sasrec/ml-1m.txt.gz .device-data/ml-1m-sasrec/
    # on the device, with `.device-data` carried:
    GENREC_SHARED_DATA=.device-data PYTHONUNBUFFERED=1 python bench/device/sasrec_check.py --epochs 20
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from genrec_core.dev.benchmarks.quality_bench import SEED, load
from genrec_core.models.base import FitOptions
from genrec_core.models.sasrec import SASRecConfig
from genrec_core.models.sasrec.model import SASRec
from genrec_core.ranking.metrics import evaluate
from genrec_core.ranking.topk import chunk_rows, iter_top_k


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20, help="a cap: the check times epochs, it does not converge")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    split = load("ml-1m-sasrec")
    model = SASRec(SASRecConfig(epochs=args.epochs))
    options = FitOptions(SEED, args.device, 0, split.validation(k=20, patience=args.epochs))
    model.fit(split.interactions("fit"), options)
    log = model.training_log
    history = split.history(model)
    users = np.flatnonzero(np.diff(history.indptr) > 0)
    if args.device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    scored = sum(len(chunk.users) for chunk in iter_top_k(model, history, users, 10, chunk_rows(history.shape[1])))
    if args.device == "cuda":
        torch.cuda.synchronize()
    users_per_s = scored / (time.perf_counter() - started)
    metrics = evaluate(model, history, split.test, 10)
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                "epochs": len(log),
                "epoch_seconds": round(float(np.median([e["train_seconds"] for e in log])), 2),
                "best_valid_ndcg@20": round(max(e["val_ndcg"] for e in log), 4),
                "test_hr@10": round(metrics["recall@10"], 4),
                "test_ndcg@10": round(metrics["ndcg@10"], 4),
                "scoring_users_per_s": round(users_per_s, 1),
                "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                if args.device == "cuda"
                else None,
            }
        )
    )


if __name__ == "__main__":
    main()
