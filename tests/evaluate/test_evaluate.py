import math

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_core.ranking.metrics import evaluation_targets, metrics_for_lists


def test_hand_computed_case():
    # user 0: relevant {1, 4}; list [4, 2, 1] -> hits at ranks 1 and 3
    # user 1: relevant {3};    list [0, 2, 5] -> no hit
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 0, 1, 0], [0, 0, 0, 1, 0, 0]], dtype=np.float32))
    top = np.array([[4, 2, 1], [0, 2, 5]])
    m = metrics_for_lists(top, relevant, k=3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert m["recall"].tolist() == [1.0, 0.0]
    assert m["precision"].tolist() == [2 / 3, 0.0]
    assert m["ndcg"][0] == np.float64(dcg / idcg) and m["ndcg"][1] == 0.0


def test_padding_never_counts_as_a_hit():
    relevant = sp.csr_matrix(np.array([[1, 0, 0]], dtype=np.float32))
    m = metrics_for_lists(np.array([[2, -1, -1]]), relevant, k=3)
    assert m["recall"][0] == 0.0


def test_targets_drop_items_already_seen_in_training():
    train = sp.csr_matrix(np.array([[1, 0, 1]], dtype=np.float32))
    holdout = sp.csr_matrix(np.array([[1, 1, 0]], dtype=np.float32))
    assert evaluation_targets(train, holdout).toarray().tolist() == [[0, 1, 0]]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_metrics_agree_with_a_plain_reference(data):
    n_items = data.draw(st.integers(3, 12))
    k = data.draw(st.integers(1, n_items))
    rel = data.draw(st.lists(st.sampled_from(range(n_items)), min_size=1, max_size=n_items, unique=True))
    top = data.draw(st.permutations(range(n_items)))[:k]
    relevant = sp.csr_matrix((np.ones(len(rel)), ([0] * len(rel), rel)), shape=(1, n_items))
    m = metrics_for_lists(np.array([top]), relevant, k)
    hits = [1 if i in rel else 0 for i in top]
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
    assert math.isclose(m["recall"][0], sum(hits) / len(rel))
    assert math.isclose(m["precision"][0], sum(hits) / k)
    assert math.isclose(m["ndcg"][0], dcg / idcg)
    precision_at_hits = [sum(hits[: r + 1]) / (r + 1) for r, h in enumerate(hits) if h]
    assert math.isclose(m["map"][0], sum(precision_at_hits) / min(k, len(rel)))
    assert 0.0 <= m["ndcg"][0] <= 1.0 + 1e-12


def test_map_hand_computed():
    # relevant {1, 4}; list [4, 2, 1]: hits at ranks 1 and 3 -> AP = (1/1 + 2/3) / min(3, 2)
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 0, 1, 0]], dtype=np.float32))
    m = metrics_for_lists(np.array([[4, 2, 1]]), relevant, k=3)
    assert math.isclose(m["map"][0], (1.0 + 2 / 3) / 2)


def test_evaluate_reports_every_metric_at_each_k_from_one_pass():
    from genrec_core.models.base import FitOptions
    from genrec_core.models.popularity.model import Popularity
    from genrec_core.ranking.metrics import evaluate
    from tests.support import two_block_interactions

    data = two_block_interactions()
    train = data.matrix.tolil()
    holdout = sp.lil_matrix(train.shape, dtype=np.float32)
    for u in range(train.shape[0]):  # hold out each user's first item
        item = train.rows[u][0]
        train[u, item] = 0
        holdout[u, item] = 1
    train, holdout = train.tocsr(), holdout.tocsr()
    train.eliminate_zeros()
    model = Popularity().fit(type(data)(train, data.users, data.items), FitOptions())
    both = evaluate(model, train, holdout, (5, 10))
    alone = evaluate(model, train, holdout, 5)
    for name in ("recall", "ndcg", "precision", "map", "coverage", "popularity_bias"):
        assert both[f"{name}@5"] == alone[f"{name}@5"]
        assert f"{name}@10" in both
    assert both["recall@10"] >= both["recall@5"]
    popularity = np.asarray((train > 0).sum(axis=0)).ravel() / train.shape[0]
    assert 0.0 < both["popularity_bias@5"] <= popularity.max()
