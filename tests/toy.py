"""Known-answer toy data: two taste groups that never cross."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from genrec_core.data.interactions import Interactions, Vocabulary


def two_block_interactions(users_per_block: int = 30, items_per_block: int = 12, per_user: int = 6,
                           seed: int = 0) -> Interactions:
    """Users 0..n-1 use items of block 0, users n..2n-1 items of block 1 (per_user items each)."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for block in range(2):
        for u in range(users_per_block):
            chosen = rng.choice(items_per_block, size=per_user, replace=False) + block * items_per_block
            rows += [block * users_per_block + u] * per_user
            cols += chosen.tolist()
    n_users, n_items = 2 * users_per_block, 2 * items_per_block
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    users = Vocabulary(np.array([f"u{i}" for i in range(n_users)], dtype=object))
    items = Vocabulary(np.array([f"i{i}" for i in range(n_items)], dtype=object))
    return Interactions(matrix, users, items)
