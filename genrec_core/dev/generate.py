"""Synthetic interaction logs in the raw-log contract, for tests, the demo and benchmarks.

The log is shaped like a shop's: item popularity follows a Zipf law, users belong
to taste clusters that prefer their own slice of the catalogue, users come back
to items they saw before, and events follow a view -> click -> cart -> purchase
funnel with occasional explicit ratings. The same arguments give the same files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from genrec_core.contract import partition_name
from genrec_core.storage import Storage, join

_EVENT_MIX = (("view", 0.70), ("click", 0.14), ("add_to_cart", 0.07), ("purchase", 0.05), ("rating", 0.04))


@dataclass(frozen=True)
class LogSpec:
    """What to generate."""

    users: int
    items: int
    days: int
    end_date: dt.date
    seed: int = 0
    clusters: int = 8
    active_share: float = 0.35
    events_per_active_user: float = 6.0
    in_cluster_share: float = 0.75
    revisit_share: float = 0.25
    duplicate_share: float = 0.005

    def __post_init__(self) -> None:
        for name in ("users", "items", "days", "clusters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def user_ids(n: int) -> np.ndarray:
    return np.char.add("u", np.char.zfill(np.arange(n).astype(str), 7))


def item_ids(n: int) -> np.ndarray:
    return np.char.add("i", np.char.zfill(np.arange(n).astype(str), 6))


class _Catalogue:
    """Per-cluster item distributions, sampled by inverse CDF."""

    def __init__(self, spec: LogSpec, rng: np.random.Generator) -> None:
        ranks = rng.permutation(spec.items) + 1
        popularity = 1.0 / ranks**0.9
        self.global_cdf = np.cumsum(popularity / popularity.sum())
        home = rng.integers(0, spec.clusters, size=spec.items)
        cdfs = []
        for c in range(spec.clusters):
            w = popularity * np.where(home == c, 1.0, 0.02)
            cdfs.append(np.cumsum(w / w.sum()))
        self.cluster_cdfs = np.stack(cdfs)

    def sample(self, clusters: np.ndarray, rng: np.random.Generator, in_cluster_share: float) -> np.ndarray:
        u = rng.random(len(clusters))
        out = np.searchsorted(self.global_cdf, u)
        in_cluster = rng.random(len(clusters)) < in_cluster_share
        for c in np.unique(clusters[in_cluster]):
            sel = in_cluster & (clusters == c)
            out[sel] = np.searchsorted(self.cluster_cdfs[c], u[sel])
        return np.minimum(out, len(self.global_cdf) - 1)


def generate_day(
    spec: LogSpec,
    day: dt.date,
    catalogue: _Catalogue,
    user_cluster: np.ndarray,
    last_item: np.ndarray,
    rng: np.random.Generator,
) -> pa.Table:
    """One day's events; `last_item` carries each user's previous item across days."""
    active = np.flatnonzero(rng.random(spec.users) < spec.active_share)
    counts = 1 + rng.poisson(spec.events_per_active_user - 1, size=len(active))
    users = np.repeat(active, counts)
    items = catalogue.sample(user_cluster[users], rng, spec.in_cluster_share)
    revisit = (rng.random(len(users)) < spec.revisit_share) & (last_item[users] >= 0)
    items[revisit] = last_item[users[revisit]]
    last_item[users] = items  # the last event of each user wins; enough for revisits

    names = np.array([name for name, _ in _EVENT_MIX])
    probs = np.array([p for _, p in _EVENT_MIX])
    etype = names[rng.choice(len(names), size=len(users), p=probs / probs.sum())]
    value = np.full(len(users), np.nan)
    is_rating = etype == "rating"
    value[is_rating] = rng.integers(1, 6, size=int(is_rating.sum())).astype(float)
    value[etype == "purchase"] = np.round(rng.gamma(2.0, 15.0, size=int((etype == "purchase").sum())), 2)

    start = np.datetime64(day.isoformat(), "us")
    ts = start + rng.integers(0, 86_400_000_000, size=len(users)).astype("timedelta64[us]")

    dup = np.flatnonzero(rng.random(len(users)) < spec.duplicate_share)
    if len(dup):  # exact duplicate rows, as an at-least-once log shipper produces
        users, items, etype, ts, value = (np.concatenate([a, a[dup]]) for a in (users, items, etype, ts, value))

    order = np.argsort(ts, kind="stable")
    return pa.table(
        {
            "user_id": pa.array(user_ids(spec.users)[users[order]], pa.string()),
            "item_id": pa.array(item_ids(spec.items)[items[order]], pa.string()),
            "event_type": pa.array(etype[order], pa.string()),
            "event_ts": pa.array(ts[order], pa.timestamp("us", tz="UTC")),
            "value": pa.array(value[order], pa.float64(), mask=np.isnan(value[order])),
        }
    )


def generate_logs(spec: LogSpec, out_uri: str, storage: Storage | None = None) -> dict[str, int]:
    """Write ``out_uri/dt=YYYY-MM-DD/part-00000.parquet`` for each day; return counts."""
    storage = storage or Storage()
    rng = np.random.default_rng(spec.seed)
    catalogue = _Catalogue(spec, rng)
    user_cluster = rng.integers(0, spec.clusters, size=spec.users)
    last_item = np.full(spec.users, -1, dtype=np.int64)
    total = 0
    first = spec.end_date - dt.timedelta(days=spec.days - 1)
    for offset in range(spec.days):
        day = first + dt.timedelta(days=offset)
        table = generate_day(spec, day, catalogue, user_cluster, last_item, rng)
        storage.write_table(join(out_uri, partition_name(day), "part-00000.parquet"), table)
        total += table.num_rows
    return {"events": total, "days": spec.days, "users": spec.users, "items": spec.items}
