import datetime as dt

import numpy as np
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genrec_core.data.interactions import Vocabulary
from genrec_core.models.base import Recommender
from genrec_core.ranking.topk import deterministic_top_k, iter_top_k
from genrec_core.score.tables import chunk_to_table, shard_of


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
    table = chunk_to_table(
        chunk,
        Vocabulary(np.array(["u"], dtype=object)),
        Vocabulary(np.array(list("abcd"), dtype=object)),
        dt.date(2026, 1, 1),
        "fixed",
    )
    assert table.to_pydict()["item_id"] == ["d"] and table.to_pydict()["rank"] == [1]


def test_table_is_in_the_output_contract():
    history = _history([[0], [1]], n_items=5)
    (chunk,) = iter_top_k(FixedScores(5), history, np.array([1, 0]), k=2, chunk_size=8)
    table = chunk_to_table(
        chunk,
        Vocabulary(np.array(["ua", "ub"], dtype=object)),
        Vocabulary(np.array(list("abcde"), dtype=object)),
        dt.date(2026, 1, 1),
        "fixed",
    )
    assert table.column_names == ["run_date", "user_id", "rank", "item_id", "score", "model", "source"]
    assert set(table.column("source").to_pylist()) == {"model"}
    rows = table.to_pylist()
    assert [(r["user_id"], r["rank"], r["item_id"]) for r in rows] == [
        ("ub", 1, "e"),
        ("ub", 2, "d"),
        ("ua", 1, "e"),
        ("ua", 2, "d"),
    ]
    assert {r["run_date"] for r in rows} == {dt.date(2026, 1, 1)}


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_deterministic_top_k_matches_a_reference_ordering(data):
    """Higher score first, ties to the lower item index; exact for repeated, negative and infinite scores."""
    n_items = data.draw(st.integers(1, 30))
    k = data.draw(st.integers(1, n_items))
    values = data.draw(
        st.lists(
            st.sampled_from([-np.inf, -2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 1e30, np.inf]),
            min_size=n_items,
            max_size=n_items,
        )
    )
    scores = np.array([values], dtype=np.float32)
    idx, vals = deterministic_top_k(torch.from_numpy(scores), k)
    expected = sorted(range(n_items), key=lambda i: (-float(scores[0, i]), i))[:k]
    got = idx[0].tolist()
    # -0.0 and 0.0 compare equal as floats; the key orders +0.0 first, which is still deterministic
    assert [float(scores[0, i]) for i in got] == [float(scores[0, i]) for i in expected]
    assert vals[0].tolist() == [float(scores[0, i]) for i in got]
    zeros = {i for i in range(n_items) if scores[0, i] == 0.0}
    if not zeros & set(got):
        assert got == expected


def test_item_mask_keeps_k_eligible_items():
    history = _history([[9]], n_items=10)
    eligible = np.ones(10, dtype=bool)
    eligible[[8, 7]] = False
    (chunk,) = iter_top_k(FixedScores(10), history, np.arange(1), k=3, chunk_size=4, item_mask=eligible)
    assert chunk.items.tolist() == [[6, 5, 4]]


def test_ties_are_broken_the_same_way_for_any_chunk_size():
    class Flat(FixedScores):
        def score(self, history):
            return torch.zeros(history.shape[0], self.n_items)

    history = sp.random(40, 25, density=0.1, random_state=3, format="csr", dtype=np.float32)
    runs = [np.vstack([c.items for c in iter_top_k(Flat(25), history, np.arange(40), 5, size)]) for size in (1, 7, 40)]
    assert all(np.array_equal(runs[0], r) for r in runs[1:])
    for u in range(40):  # all scores equal: the lowest unseen item indices, in order
        unseen = [i for i in range(25) if i not in set(history[u].indices)]
        assert runs[0][u].tolist() == unseen[:5]


def test_shards_are_stable_and_cover_everyone():
    ids = np.array([f"u{i:07d}" for i in range(5000)], dtype=object)
    shards = shard_of(ids, 4)
    assert set(shards.tolist()) == {0, 1, 2, 3}
    assert np.array_equal(shards, shard_of(ids.copy(), 4))
    assert abs(np.bincount(shards).min() - 1250) < 150  # roughly even
    assert (shard_of(ids, 1) == 0).all()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_deterministic_top_k_with_nans_and_wide_rows(data):
    rows = data.draw(st.integers(1, 4))
    n_items = data.draw(st.integers(2, 40))
    k = data.draw(st.integers(1, n_items))
    pool = [np.nan, -np.inf, -1.0, 0.0, 0.25, 2.0, np.inf]
    values = np.array(
        data.draw(
            st.lists(st.lists(st.sampled_from(pool), min_size=n_items, max_size=n_items), min_size=rows, max_size=rows)
        ),
        dtype=np.float32,
    )
    idx, vals = deterministic_top_k(torch.from_numpy(values.copy()), k)
    clean = np.where(np.isnan(values), -np.inf, values)
    for r in range(rows):
        expected = sorted(range(n_items), key=lambda i: (-clean[r, i], i))[:k]
        assert idx[r].tolist() == expected
        assert vals[r].tolist() == [float(clean[r, i]) for i in expected]
