"""Ranking metrics on a held-out day: Recall@k, NDCG@k, Precision@k, item coverage.

Recall@k = hits / |relevant| (the common definition, as in RecBole); NDCG@k uses
binary gains with the ideal DCG over min(k, |relevant|) items.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec_core.models.base import Recommender
from genrec_core.score import iter_top_k


def evaluation_targets(train: sp.csr_matrix, holdout: sp.csr_matrix) -> sp.csr_matrix:
    """Held-out items each user had not interacted with in training (what a list can still find)."""
    seen = (train > 0).astype(np.int8)
    new = (holdout > 0).astype(np.int8) - seen.multiply(holdout > 0).astype(np.int8)
    new.eliminate_zeros()
    return new.tocsr()


def metrics_for_lists(top_items: np.ndarray, relevant: sp.csr_matrix, k: int) -> dict[str, np.ndarray]:
    """Per-user metric arrays for lists `top_items` [n, >=k] (-1 padded) against `relevant` rows [n, items]."""
    top = top_items[:, :k]
    n_rel = np.diff(relevant.indptr)
    hits = np.zeros(top.shape, dtype=bool)
    for i in range(top.shape[0]):  # sets are tiny; one row at a time keeps memory flat
        row = relevant.indices[relevant.indptr[i]:relevant.indptr[i + 1]]
        hits[i] = np.isin(top[i], row) & (top[i] >= 0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_rel, k) - 1]
    n_hits = hits.sum(axis=1)
    return {
        "recall": n_hits / n_rel,
        "ndcg": dcg / ideal,
        "precision": n_hits / k,
    }


def evaluate(model: Recommender, train: sp.csr_matrix, holdout: sp.csr_matrix, k: int,
             chunk_size: int = 4096) -> dict[str, Any]:
    """Mean metrics@k over users with at least one new held-out item; lists built from `train` history."""
    targets = evaluation_targets(train, holdout)
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    if len(users) == 0:
        return {"users_evaluated": 0, f"recall@{k}": None, f"ndcg@{k}": None, f"precision@{k}": None,
                f"coverage@{k}": None}
    sums = {"recall": 0.0, "ndcg": 0.0, "precision": 0.0}
    recommended = np.zeros(train.shape[1], dtype=bool)
    for chunk in iter_top_k(model, train, users, k, chunk_size):
        per_user = metrics_for_lists(chunk.items, targets[chunk.users], k)
        for name in sums:
            sums[name] += float(per_user[name].sum())
        recommended[chunk.items[chunk.items >= 0]] = True
    n = len(users)
    return {
        "users_evaluated": n,
        f"recall@{k}": sums["recall"] / n,
        f"ndcg@{k}": sums["ndcg"] / n,
        f"precision@{k}": sums["precision"] / n,
        f"coverage@{k}": float(recommended.mean()),
    }
