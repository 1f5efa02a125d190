"""The one data object that crosses stages: a user x item matrix plus its two vocabularies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from genrec_core.data.sequences import ranks_in_rows
from genrec_core.errors import DataError
from genrec_core.storage import Storage, join


@dataclass(frozen=True)
class Vocabulary:
    """Append-only map between external ids (strings) and dense indices.

    Index i is `ids[i]`; an id keeps its index forever, new ids are appended.
    """

    ids: np.ndarray  # dtype object/str, position == index

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, ids: np.ndarray | list[str]) -> np.ndarray:
        """Indices of the given ids; -1 for ids not in the vocabulary (explicitly unknown)."""
        lookup = {v: i for i, v in enumerate(self.ids.tolist())}
        return np.fromiter((lookup.get(x, -1) for x in ids), dtype=np.int64, count=len(ids))

    def to_table(self) -> pa.Table:
        return pa.table(
            {"id": pa.array(self.ids.tolist(), pa.string()), "idx": pa.array(np.arange(len(self.ids)), pa.int64())}
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> Vocabulary:
        idx = table.column("idx").to_numpy()
        ids = np.asarray(table.column("id").to_pylist(), dtype=object)
        order = np.argsort(idx)
        if not np.array_equal(idx[order], np.arange(len(idx))):
            raise ValueError("vocabulary indices are not a dense 0..n-1 range")
        return cls(ids[order])


@dataclass(frozen=True)
class Interactions:
    """Implicit feedback: `matrix[u, i]` is the weight of user u's strongest signal on item i.

    `order`, when the data carry time, has `matrix`'s pattern and holds each pair's place in the user's
    history: 1 for the item the user reached first, n for the latest (see `genrec_core/data/sequences.py`).
    """

    matrix: sp.csr_matrix
    users: Vocabulary
    items: Vocabulary
    order: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        if self.matrix.shape != (len(self.users), len(self.items)):
            raise ValueError(
                f"matrix shape {self.matrix.shape} does not match vocabularies ({len(self.users)}, {len(self.items)})"
            )
        if self.order is not None and (self.order.shape != self.matrix.shape or self.order.nnz != self.matrix.nnz):
            raise ValueError(f"order {self.order.shape} ({self.order.nnz} pairs) does not match the matrix")

    def ordered(self) -> sp.csr_matrix:
        """The histories' time order (`order`); a clear error when the data have none."""
        if self.order is None:
            raise DataError(
                "these interactions carry no time order (an extract written before genrec 0.6 has no "
                "first_ts/last_ts columns: rerun the extract), which a sequential model needs"
            )
        return self.order

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    def users_with_history(self) -> np.ndarray:
        """Indices of users with at least one interaction."""
        return np.flatnonzero(np.diff(self.matrix.indptr) > 0)

    def binary(self) -> sp.csr_matrix:
        out = self.matrix.copy()
        out.data = np.ones_like(out.data, dtype=np.float32)
        return out

    @classmethod
    def from_daily(
        cls,
        daily: pa.Table,
        users: Vocabulary,
        items: Vocabulary,
        positive_only: bool = True,
        count_weight: float = 0.0,
    ) -> Interactions:
        """Collapse daily aggregates (user_idx, item_idx, weight[, events, first_ts]) into one matrix.

        A pair's value is its largest daily weight, plus `count_weight * ln(events)` over its
        positive days when `count_weight` > 0 (so one event adds nothing, repeats add slowly).
        With `positive_only=False` every seen pair is kept with weight 1 (the scorer's mask).
        With a `first_ts` column the result also carries `order`: pairs ranked by their first event
        (microseconds), ties by item index.
        """
        if positive_only:
            daily = daily.filter(pc.greater(daily.column("weight"), 0))
        n_users, n_items = len(users), len(items)
        # One int64 key per (user, item): sorting it groups a pair's days, already in CSR order.
        key = daily.column("user_idx").to_numpy().astype(np.int64) * n_items
        key += daily.column("item_idx").to_numpy()
        weight = (
            np.ones(len(key), np.float32) if not positive_only else daily.column("weight").to_numpy().astype(np.float32)
        )
        order = np.argsort(key, kind="stable")
        key = key[order]
        weight = weight[order]
        events = daily.column("events").to_numpy()[order].astype(np.float64) if positive_only and count_weight else None
        first_ts = (
            daily.column("first_ts").to_numpy(zero_copy_only=False)[order].astype(np.int64)
            if positive_only and "first_ts" in daily.column_names
            else None
        )
        del order
        starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))) if len(key) else np.zeros(0, np.int64)
        values = np.maximum.reduceat(weight, starts) if len(starts) else np.zeros(0, np.float32)
        if events is not None and len(starts):
            values = values + np.float32(count_weight) * np.log(np.add.reduceat(events, starts)).astype(np.float32)
        key = key[starts]
        indptr = np.searchsorted(key, np.arange(n_users + 1, dtype=np.int64) * n_items)
        columns = (key % n_items).astype(np.int32)
        matrix = sp.csr_matrix((values, columns, indptr), shape=(n_users, n_items))
        order_matrix = None
        if first_ts is not None:
            pair_ts = np.minimum.reduceat(first_ts, starts) if len(starts) else np.zeros(0, np.int64)
            order_matrix = sp.csr_matrix((ranks_in_rows(indptr, pair_ts, columns), columns, indptr), matrix.shape)
        return cls(matrix, users, items, order_matrix)


@dataclass
class ExtractedData:
    """Handle on one run date's extract output (written by the Spark job)."""

    uri: str
    run_date: dt.date
    storage: Storage
    _items: Vocabulary | None = None
    _stats: dict | None = None
    _has_order: bool | None = None

    def stats(self) -> dict:
        """The extract's stats.json (counts, and the weighting and k-core it was made with)."""
        if self._stats is None:
            self._stats = self.storage.read_json(join(self.uri, "stats.json"))
        return self._stats

    def _weighted(self, table: pa.Table) -> pa.Table:
        """Apply the extract's time decay: a row's weight halves every `decay_half_life_days` before D."""
        half_life = (self.stats().get("weighting") or {}).get("decay_half_life_days")
        if not half_life or table.num_rows == 0:
            return table
        day = pc.cast(table.column("day"), pa.string())
        days = pc.unique(day)
        factor = np.array(
            [0.5 ** ((self.run_date - dt.date.fromisoformat(d)).days / half_life) for d in days.to_pylist()]
        )
        weight = table.column("weight").to_numpy() * factor[pc.index_in(day, days).to_numpy()]
        return table.set_column(table.schema.get_field_index("weight"), "weight", pa.array(weight))

    def _count_weight(self) -> float:
        return float((self.stats().get("weighting") or {}).get("count_weight") or 0.0)

    def _kcore_filter(self, interactions: Interactions) -> Interactions:
        """Keep only the k-core's users and items (training data only; scoring uses every history)."""
        if not self.stats().get("kcore"):
            return interactions
        keep_users = self.storage.read_table(join(self.uri, "kcore", "users"), columns=["user_idx"])
        keep_items = self.storage.read_table(join(self.uri, "kcore", "items"), columns=["item_idx"])
        row = np.zeros(interactions.n_users, np.float32)
        row[keep_users.column(0).to_numpy()] = 1
        col = np.zeros(interactions.n_items, np.float32)
        col[keep_items.column(0).to_numpy()] = 1
        matrix = (sp.diags(row) @ interactions.matrix @ sp.diags(col)).tocsr()
        matrix.eliminate_zeros()
        order = None
        if interactions.order is not None:  # the kept pairs, re-ranked 1..n per user
            order = (sp.diags(row) @ interactions.order @ sp.diags(col)).tocsr()
            order.eliminate_zeros()
            order.data = ranks_in_rows(order.indptr, order.data, order.indices)
        return Interactions(matrix, interactions.users, interactions.items, order)

    @property
    def daily_uri(self) -> str:
        return join(self.uri, "daily")

    def vocabularies(self) -> tuple[Vocabulary, Vocabulary]:
        users = Vocabulary.from_table(self.storage.read_table(join(self.uri, "vocab", "users")))
        return users, self.items()

    def items(self) -> Vocabulary:
        if self._items is None:
            self._items = Vocabulary.from_table(self.storage.read_table(join(self.uri, "vocab", "items")))
        return self._items

    def has_order(self) -> bool:
        """Whether the daily files carry event times (extracts from genrec 0.6 on)."""
        if self._has_order is None:
            import pyarrow.dataset as pads

            fs, path = self.storage.resolve(self.daily_uri)
            names = pads.dataset(path, format="parquet", partitioning="hive", filesystem=fs).schema.names
            self._has_order = "first_ts" in names
        return self._has_order

    def _columns(self, *names: str) -> list[str]:
        """`names`, plus `first_ts` when the files carry it (the time order of the histories)."""
        return [*names, *(["first_ts"] if self.has_order() else [])]

    def daily(self) -> pa.Table:
        return self.storage.read_table(
            self.daily_uri, columns=self._columns("user_idx", "item_idx", "day", "weight", "events")
        )

    def user_rows(self, lo: int, hi: int, columns: list[str]) -> pa.Table:
        """Daily aggregate rows of users lo..hi-1 (row groups are pruned by their user_idx statistics)."""
        import pyarrow.dataset as pads

        fs, path = self.storage.resolve(self.daily_uri)
        dataset = pads.dataset(path, format="parquet", partitioning="hive", filesystem=fs)
        return dataset.to_table(columns=columns, filter=(pads.field("user_idx") >= lo) & (pads.field("user_idx") < hi))

    def user_block(self, lo: int, hi: int, ordered: bool = False) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(positive feedback, seen pairs) of users lo..hi-1 over the window, as [hi-lo, items] matrices;
        with `ordered`, the positive feedback's time order (`Interactions.order`) instead of its weights."""
        table = self._weighted(self.user_rows(lo, hi, self._columns("user_idx", "item_idx", "weight", "day", "events")))
        shifted = table.set_column(0, "user_idx", pc.subtract(table.column("user_idx"), pa.scalar(lo, pa.int64())))
        block_users = Vocabulary(np.empty(hi - lo, dtype=object))
        full = Interactions.from_daily(shifted, block_users, self.items(), count_weight=self._count_weight())
        seen = Interactions.from_daily(shifted, block_users, self.items(), positive_only=False).matrix
        return (full.ordered() if ordered else full.matrix), seen

    def scan(self, columns: list[str], batch_rows: int = 1_000_000) -> Iterator[pa.RecordBatch]:
        """The daily aggregates in record batches (bounded memory)."""
        import pyarrow.dataset as pads

        fs, path = self.storage.resolve(self.daily_uri)
        dataset = pads.dataset(path, format="parquet", partitioning="hive", filesystem=fs)
        yield from dataset.to_batches(columns=columns, batch_size=batch_rows)

    def user_event_counts(self) -> np.ndarray:
        """Accepted (deduplicated) events per user index over the window through D (streamed)."""
        n_users = self.storage.read_table(join(self.uri, "vocab", "users"), columns=["idx"]).num_rows
        counts = np.zeros(n_users, dtype=np.int64)
        for batch in self.scan(["user_idx", "events"]):
            counts += np.bincount(
                batch.column(0).to_numpy(), weights=batch.column(1).to_numpy(), minlength=n_users
            ).astype(np.int64)
        return counts

    def split(self, holdout_day: dt.date | None = None) -> tuple[Interactions, Interactions, Interactions]:
        """Positive feedback as (train: days before the holdout day, holdout: that day (D by default),
        full: the whole window through D).

        Time decay and the count term apply to all three; the k-core filter to the two training sets.
        """
        users, items = self.vocabularies()
        daily = self._weighted(self.daily())
        day = pc.cast(daily.column("day"), pa.string())
        held = (holdout_day or self.run_date).isoformat()
        count_weight = self._count_weight()
        train = Interactions.from_daily(daily.filter(pc.less(day, held)), users, items, count_weight=count_weight)
        holdout = Interactions.from_daily(daily.filter(pc.equal(day, held)), users, items, count_weight=count_weight)
        full = Interactions.from_daily(daily, users, items, count_weight=count_weight)
        return self._kcore_filter(train), holdout, self._kcore_filter(full)

    def seen(self) -> Interactions:
        """Every (user, item) pair with an accepted event in the window through D, weight 1."""
        users, items = self.vocabularies()
        return Interactions.from_daily(self.daily(), users, items, positive_only=False)
