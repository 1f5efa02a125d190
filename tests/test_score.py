import datetime as dt

import numpy as np
import scipy.sparse as sp
import torch

from genrec_core.data.interactions import Vocabulary
from genrec_core.models.base import Recommender
from genrec_core.score import chunk_to_table, iter_top_k


class FixedScores(Recommender):
    """A fake model with a known score for every (row, item): scores[i] = item index (higher is better)."""

    name = "fixed"

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.n_items = n_items

    def _fit(self, train, options):  # pragma: no cover - never trained
        raise NotImplementedError

    def score(self, history):
        self._check_history(history)
        return torch.arange(self.n_items, dtype=torch.float32).repeat(history.shape[0], 1)

    def config_dict(self):
        return {}

    def state(self):
        return {}

    def load_state(self, config, n_items, state):
        self.n_items = n_items


def _history(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [i for i, row in enumerate(rows) for _ in row]
    c = [j for row in rows for j in row]
    return sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n_items))


def test_known_answer_masks_seen_items():
    history = _history([[9, 7], [0], [8, 6, 5]], n_items=10)
    chunks = list(iter_top_k(FixedScores(10), history, np.arange(3), k=3, chunk_size=2))
    items = np.vstack([c.items for c in chunks])
    assert items.tolist() == [[8, 6, 5], [9, 8, 7], [9, 7, 4]]


def test_chunk_size_does_not_change_lists():
    rng = np.random.default_rng(0)
    history = sp.random(50, 30, density=0.2, random_state=1, format="csr", dtype=np.float32)
    model = FixedScores(30)
    users = rng.permutation(50)
    a = np.vstack([c.items for c in iter_top_k(model, history, users, k=5, chunk_size=7)])
    b = np.vstack([c.items for c in iter_top_k(model, history, users, k=5, chunk_size=50)])
    assert np.array_equal(a, b)


def test_fewer_eligible_items_than_k_are_padded_and_dropped_from_the_table():
    history = _history([[0, 1, 2]], n_items=4)
    (chunk,) = iter_top_k(FixedScores(4), history, np.arange(1), k=3, chunk_size=8)
    assert chunk.items.tolist() == [[3, -1, -1]]
    table = chunk_to_table(chunk, Vocabulary(np.array(["u"], dtype=object)),
                           Vocabulary(np.array(list("abcd"), dtype=object)), dt.date(2026, 1, 1), "fixed")
    assert table.to_pydict()["item_id"] == ["d"] and table.to_pydict()["rank"] == [1]


def test_table_is_in_the_output_contract():
    history = _history([[0], [1]], n_items=5)
    (chunk,) = iter_top_k(FixedScores(5), history, np.array([1, 0]), k=2, chunk_size=8)
    table = chunk_to_table(chunk, Vocabulary(np.array(["ua", "ub"], dtype=object)),
                           Vocabulary(np.array(list("abcde"), dtype=object)), dt.date(2026, 1, 1), "fixed")
    assert table.column_names == ["run_date", "user_id", "rank", "item_id", "score", "model"]
    rows = table.to_pylist()
    assert [(r["user_id"], r["rank"], r["item_id"]) for r in rows] == [
        ("ub", 1, "e"), ("ub", 2, "d"), ("ua", 1, "e"), ("ua", 2, "d")]
    assert {r["run_date"] for r in rows} == {dt.date(2026, 1, 1)}
