"""Our Recall/NDCG/Precision/MAP@k against an independent implementation (ranx, Bassani 2022).

Definitions agree except MAP's denominator: ours divides a user's sum of precisions at the hit ranks
by min(k, |relevant|) (as RecBole does), ranx's (TREC's) by |relevant|. So the comparison rescales
ranx's per-user AP by |relevant| / min(k, |relevant|); for users with at most k relevant items the
two are the same number, and the data below has users on both sides of k.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from ranx import Qrels, Run
from ranx import evaluate as ranx_evaluate

from genrec_core.ranking.metrics import evaluate, metrics_for_lists

K = 10


def _case(seed: int, users: int = 300, items: int = 60, padded: bool = True) -> tuple[np.ndarray, sp.csr_matrix]:
    """Lists [users, K] (a tenth -1 padded, as when fewer items are eligible) and relevant sets of 1 to 25 items."""
    rng = np.random.default_rng(seed)
    lists = np.stack([rng.permutation(items)[:K] for _ in range(users)])
    if padded:
        short = np.flatnonzero(rng.random(users) < 0.1)
        lists[short[:, None], np.arange(K)[None, :]] = np.where(
            rng.integers(3, K, size=len(short))[:, None] <= np.arange(K), -1, lists[short]
        )
    rows, cols = [], []
    for u in range(users):
        n = int(rng.integers(1, 26))
        rows += [u] * n
        cols += rng.choice(items, size=n, replace=False).tolist()
    relevant = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(users, items))
    return lists, relevant


def _ranx(lists: np.ndarray, relevant: sp.csr_matrix) -> dict[str, np.ndarray]:
    qrels = Qrels({f"u{u:05d}": {f"i{i}": 1 for i in relevant[u].indices} for u in range(relevant.shape[0])})
    run = Run(
        {f"u{u:05d}": {f"i{i}": float(K - r) for r, i in enumerate(row) if i >= 0} for u, row in enumerate(lists)}
    )
    names = [f"recall@{K}", f"ndcg@{K}", f"precision@{K}", f"map@{K}"]
    scores = ranx_evaluate(qrels, run, names, return_mean=False, make_comparable=True)  # in sorted query-id order
    return {name.split("@")[0]: np.asarray(scores[name], dtype=np.float64) for name in names}


@pytest.mark.parametrize("seed", [0, 1])
def test_per_user_metrics_agree_with_ranx(seed):
    lists, relevant = _case(seed)
    ours = metrics_for_lists(lists, relevant, K)
    theirs = _ranx(lists, relevant)
    n_relevant = np.diff(relevant.indptr)
    assert (n_relevant > K).any() and (n_relevant <= K).any()
    for name in ("recall", "ndcg", "precision"):
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-9, err_msg=name)
    rescaled = theirs["map"] * n_relevant / np.minimum(n_relevant, K)
    np.testing.assert_allclose(ours["map"], rescaled, rtol=0, atol=1e-9)


class _FixedLists:
    """A scorer whose lists are given: item j of user u's list scores K - j, every other item -1."""

    def __init__(self, lists: np.ndarray, items: int) -> None:
        self.lists, self.items = lists, items

    def prepare(self, history: sp.csr_matrix, users: np.ndarray | None = None):
        assert users is not None
        return users

    def score_prepared(self, users: np.ndarray):
        import torch

        scores = torch.full((len(users), self.items), -1.0)
        for row, u in enumerate(users):
            for r, i in enumerate(self.lists[u]):
                if i >= 0:
                    scores[row, i] = float(K - r)
        return scores


def test_the_mean_metrics_the_gate_and_selection_use_agree_with_ranx():
    """`evaluate` (top-k with seen items masked, then the means) over lists fixed in advance."""
    lists, relevant = _case(2, users=120, items=60, padded=False)
    users = relevant.shape[0]
    # history: one item per user outside its list and relevant set (so masking it changes nothing)
    history_item = [next(i for i in range(60) if i not in set(lists[u]) and relevant[u, i] == 0) for u in range(users)]
    history = sp.csr_matrix(
        (np.arange(1, users + 1, dtype=np.float64), (np.arange(users), history_item)), shape=(users, 60)
    )
    result = evaluate(_FixedLists(lists, 60), history, relevant, K)
    theirs = _ranx(lists, relevant)
    n_relevant = np.diff(relevant.indptr)
    assert result["users_evaluated"] == users
    for name in ("recall", "ndcg", "precision"):
        assert abs(result[f"{name}@{K}"] - theirs[name].mean()) < 1e-9, name
    assert abs(result[f"map@{K}"] - (theirs["map"] * n_relevant / np.minimum(n_relevant, K)).mean()) < 1e-9
