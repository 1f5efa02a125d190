"""Helpers the tests share: tiny deterministic data, fast settings, and readers of what a run wrote.

Tests import these from here; no test imports conftest or another test module.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from genrec_core.config import Settings, load_settings
from genrec_core.data.interactions import Interactions, Vocabulary
from genrec_core.data.sequences import from_lists
from genrec_core.dev.generate import LogSpec
from genrec_core.storage import join

RUN_DATE = dt.date(2026, 11, 20)
TINY = LogSpec(users=300, items=120, days=6, end_date=RUN_DATE, seed=3)
FAST_VAE = {"epochs": 40, "hidden_dim": 64, "latent_dim": 16, "batch_size": 50, "total_anneal_steps": 200}
FAST_SASREC = {"max_length": 20, "hidden_dim": 32, "dropout": 0.1, "epochs": 80, "finetune_epochs": 5, "batch_size": 32}
S3_KEYS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}


def make_settings(events_uri: str, output_uri: str, **extra: object) -> Settings:
    """Settings for a fast test run: a named model (mult_vae, small) unless `model` says otherwise; the
    default `auto` runs a selection over every model, which the tests of the selection ask for by name."""
    values: dict[str, object] = {
        "model": "mult_vae",
        "events_uri": events_uri,
        "output_uri": output_uri,
        "lookback_days": TINY.days,
        "k": 10,
        "spark_master": "local[2]",
        "spark_driver_memory": "1g",
        "torch_threads": 2,
        "mult_vae": FAST_VAE,
        "sasrec": {**FAST_SASREC, "learning_rate": 3e-3},
    }
    values.update(extra)
    return load_settings(**values)


def planted_days(
    users: int = 300, items: int = 80, events: int = 6000, days: int = 8, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """A tiny planted log (genrec_core/dev/planted.py) as (fit: its days before the last, validation: the last
    day), the split a selection judges on."""
    from genrec_core.dev.planted import PlantedSpec, plant

    spec = PlantedSpec(users=users, items=items, days=days, end_date=RUN_DATE, events=events, seed=seed)
    log = plant(spec)
    last = RUN_DATE
    user_vocab = Vocabulary(np.array([f"u{i}" for i in range(users)], dtype=object))
    item_vocab = Vocabulary(np.array([f"i{i}" for i in range(items)], dtype=object))
    fit = log.interactions(spec.first_day, last - dt.timedelta(days=1))
    return Interactions(fit, user_vocab, item_vocab), Interactions(log.interactions(last, last), user_vocab, item_vocab)


def two_block_interactions(
    users_per_block: int = 30, items_per_block: int = 12, per_user: int = 6, seed: int = 0
) -> Interactions:
    """Users 0..n-1 use items of block 0, users n..2n-1 items of block 1 (per_user items each), in a random
    time order (`order`)."""
    rng = np.random.default_rng(seed)
    histories = []  # each user's items in the (random) order they were drawn: the time order
    for block in range(2):
        for _ in range(users_per_block):
            chosen = rng.choice(items_per_block, size=per_user, replace=False) + block * items_per_block
            histories.append(chosen.tolist())
    n_users, n_items = 2 * users_per_block, 2 * items_per_block
    order = from_lists(histories, n_items)
    matrix = sp.csr_matrix((np.ones(order.nnz, np.float32), order.indices, order.indptr), shape=order.shape)
    users = Vocabulary(np.array([f"u{i}" for i in range(n_users)], dtype=object))
    items = Vocabulary(np.array([f"i{i}" for i in range(n_items)], dtype=object))
    return Interactions(matrix, users, items, order)


def lists(run_date: dt.date, users: int, k: int, model: str = "m") -> pa.Table:
    rows = [(run_date, f"u{u}", r, f"i{(u + r) % 50}", 1.0 / r, model) for u in range(users) for r in range(1, k + 1)]
    cols = list(zip(*rows)) or [[]] * 6
    return pa.table(
        {
            "run_date": pa.array(cols[0], pa.date32()),
            "user_id": pa.array(cols[1], pa.string()),
            "rank": pa.array(cols[2], pa.int32()),
            "item_id": pa.array(cols[3], pa.string()),
            "score": pa.array(cols[4], pa.float64()),
            "model": pa.array(cols[5], pa.string()),
            "source": pa.array(["model"] * len(rows), pa.string()),
        }
    )


def query(dsn: str, sql: str, *args: object) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(sql, args or None)
        result = cur.fetchall()
    conn.close()
    return result


def fetch(dsn: str, sql: str, *args: object) -> pd.DataFrame:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
    finally:
        conn.close()


def seen_pairs(storage, events_uri: str, run_date: dt.date, days: int) -> set[tuple[str, str]]:
    """Independent oracle: every (user, item) in the raw log of the window, read straight from the files."""
    frames = []
    for n in range(days):
        day = run_date - dt.timedelta(days=n)
        frames.append(storage.read_table(join(events_uri, f"dt={day}")).to_pandas())
    raw = pd.concat(frames)
    return set(zip(raw.user_id, raw.item_id))


def assert_lists_are_complete_and_unseen(recs: pd.DataFrame, seen: set[tuple[str, str]], k: int) -> None:
    users_with_history = {u for u, _ in seen}
    assert set(recs.user_id) == users_with_history
    per_user = recs.groupby("user_id")
    assert (per_user.size() == k).all()
    assert (per_user.item_id.nunique() == k).all()
    assert (per_user["rank"].apply(lambda r: sorted(r) == list(range(1, k + 1)))).all()
    recommended = set(zip(recs.user_id, recs.item_id))
    assert not recommended & seen


def vocab_ids(uri: str, name: str) -> list[str]:
    return pq.read_table(f"{uri.removeprefix('file://')}/vocab/{name}").to_pandas().sort_values("idx").id.tolist()


def quarantine_rows(out) -> pd.DataFrame:
    return pq.read_table(out / "extract" / f"dt={RUN_DATE}" / "quarantine").to_pandas()
