"""Ranking metrics on held-out interactions: Recall, NDCG, Precision, MAP, coverage, popularity bias.

Recall@k = hits / |relevant| (the common definition, as in RecBole); NDCG@k uses binary
gains with the ideal DCG over min(k, |relevant|) items; AP@k = sum over hit ranks r of
Precision@r, divided by min(k, |relevant|); coverage@k is the share of the catalogue in
at least one list; popularity bias@k (average recommendation popularity, Abdollahpouri
et al. 2019) is the mean share of training users who had each recommended item.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec_core.ranking.topk import Scorer, chunk_rows, iter_top_k

METRICS = ("recall", "ndcg", "precision", "map")


def evaluation_targets(train: sp.csr_matrix, holdout: sp.csr_matrix) -> sp.csr_matrix:
    """Held-out items each user had not interacted with in training (what a list can still find)."""
    seen = (train > 0).astype(np.int8)
    new = (holdout > 0).astype(np.int8) - seen.multiply(holdout > 0).astype(np.int8)
    new.eliminate_zeros()
    return new.tocsr()


def hit_matrix(top_items: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Bool [n, k]: whether list entry (u, r) is in user u's relevant set (-1 padding never is)."""
    n, k = top_items.shape
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=bool)
    rows = np.repeat(np.arange(n), k)
    cols = np.maximum(top_items.ravel(), 0)
    found = np.asarray(relevant[rows, cols]).ravel() > 0
    return found.reshape(n, k) & (top_items >= 0)


def metrics_for_lists(top_items: np.ndarray, relevant: sp.csr_matrix, k: int) -> dict[str, np.ndarray]:
    """Per-user metric arrays for lists `top_items` [n, >=k] (-1 padded) against `relevant` rows [n, items]."""
    top = top_items[:, :k]
    n_rel = np.diff(relevant.indptr)
    hits = hit_matrix(top, relevant)
    ranks = np.arange(1, k + 1)
    discounts = 1.0 / np.log2(ranks + 1)
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.clip(np.minimum(n_rel, k), 1, None) - 1]
    n_hits = hits.sum(axis=1)
    precision_at_rank = np.cumsum(hits, axis=1) / ranks
    average_precision = (precision_at_rank * hits).sum(axis=1) / np.clip(np.minimum(n_rel, k), 1, None)
    return {
        "recall": n_hits / np.maximum(n_rel, 1),
        "ndcg": dcg / ideal,
        "precision": n_hits / k,
        "map": average_precision,
    }


def _empty(ks: Iterable[int]) -> dict[str, Any]:
    result: dict[str, Any] = {"users_evaluated": 0}
    for k in ks:
        for name in (*METRICS, "coverage", "popularity_bias"):
            result[f"{name}@{k}"] = None
    return result


def evaluate(
    model: Scorer, train: sp.csr_matrix, holdout: sp.csr_matrix, k: int | Iterable[int], chunk_size: int = 0
) -> dict[str, Any]:
    """Mean metrics at each k over users with at least one new held-out item; lists built from `train`.

    One top-max(k) pass serves every k (a list at k is the first k entries of a longer one).
    `chunk_size` 0: as many users per chunk as a 256 MB score block holds at this catalogue size.
    """
    ks = sorted({k} if isinstance(k, int) else set(k))
    targets = evaluation_targets(train, holdout)
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    if len(users) == 0:
        return _empty(ks)
    popularity = np.asarray((train > 0).sum(axis=0)).ravel() / max(train.shape[0], 1)
    sums = {(name, kk): 0.0 for name in (*METRICS, "popularity_bias") for kk in ks}
    recommended = {kk: np.zeros(train.shape[1], dtype=bool) for kk in ks}
    for chunk in iter_top_k(model, train, users, max(ks), chunk_rows(train.shape[1], chunk_size)):
        relevant = targets[chunk.users]
        for kk in ks:
            top = chunk.items[:, :kk]
            per_user = metrics_for_lists(top, relevant, kk)
            for name in METRICS:
                sums[(name, kk)] += float(per_user[name].sum())
            valid = top >= 0
            listed = np.maximum(valid.sum(axis=1), 1)
            sums[("popularity_bias", kk)] += float((np.where(valid, popularity[top], 0.0).sum(axis=1) / listed).sum())
            recommended[kk][top[valid]] = True
    n = len(users)
    result: dict[str, Any] = {"users_evaluated": n}
    for kk in ks:
        for name in (*METRICS, "popularity_bias"):
            result[f"{name}@{kk}"] = sums[(name, kk)] / n
        result[f"coverage@{kk}"] = float(recommended[kk].mean())
    return result
