import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genrec_core.data.interactions import Interactions, Vocabulary


def test_unknown_ids_are_minus_one():
    vocab = Vocabulary(np.array(["a", "b", "c"], dtype=object))
    assert vocab.index_of(["c", "zz", "a"]).tolist() == [2, -1, 0]


@given(st.lists(st.text(min_size=1, max_size=5), unique=True, max_size=30))
def test_vocabulary_table_round_trip(ids):
    vocab = Vocabulary(np.array(ids, dtype=object))
    again = Vocabulary.from_table(vocab.to_table())
    assert again.ids.tolist() == ids
    assert vocab.index_of(ids).tolist() == list(range(len(ids)))


def test_vocabulary_rejects_gaps():
    with pytest.raises(ValueError, match="dense"):
        Vocabulary.from_table(pa.table({"id": ["a", "b"], "idx": [0, 2]}))


def test_from_daily_keeps_max_weight_per_pair():
    users = Vocabulary(np.array(["u0", "u1"], dtype=object))
    items = Vocabulary(np.array(["i0", "i1", "i2"], dtype=object))
    daily = pa.table({"user_idx": [0, 0, 0, 1], "item_idx": [1, 1, 2, 0], "weight": [1.0, 5.0, 2.0, 3.0]})
    inter = Interactions.from_daily(daily, users, items)
    assert inter.matrix.toarray().tolist() == [[0, 5, 2], [3, 0, 0]]
    assert inter.users_with_history().tolist() == [0, 1]
    assert inter.binary().toarray().tolist() == [[0, 1, 1], [1, 0, 0]]


def test_shape_must_match_vocabularies():
    import scipy.sparse as sp

    with pytest.raises(ValueError, match="does not match"):
        Interactions(
            sp.csr_matrix((2, 2)),
            Vocabulary(np.array(["u"], dtype=object)),
            Vocabulary(np.array(["a", "b"], dtype=object)),
        )


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5), st.sampled_from([0.0, 1.0, 2.0, 5.0])), max_size=40))
def test_from_daily_agrees_with_a_dictionary_reference(rows):
    users = Vocabulary(np.array([f"u{i}" for i in range(5)], dtype=object))
    items = Vocabulary(np.array([f"i{i}" for i in range(6)], dtype=object))
    daily = pa.table(
        {
            "user_idx": pa.array([r[0] for r in rows], pa.int64()),
            "item_idx": pa.array([r[1] for r in rows], pa.int64()),
            "weight": pa.array([r[2] for r in rows], pa.float32()),
        }
    )
    best: dict[tuple[int, int], float] = {}
    for u, i, w in rows:
        best[(u, i)] = max(best.get((u, i), 0.0), w)
    positive = Interactions.from_daily(daily, users, items).matrix.todok()
    assert dict(positive.items()) == {k: v for k, v in best.items() if v > 0}
    seen = Interactions.from_daily(daily, users, items, positive_only=False).matrix
    assert set(zip(*seen.nonzero())) == set(best) and set(seen.data.tolist()) <= {1.0}
    assert seen.has_sorted_indices
