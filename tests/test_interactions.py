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
        Interactions(sp.csr_matrix((2, 2)), Vocabulary(np.array(["u"], dtype=object)),
                     Vocabulary(np.array(["a", "b"], dtype=object)))
