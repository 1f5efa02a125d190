"""A synthetic log whose next-item distribution is known: a planted first-order chain over items.

Each item i has `successors` items that tend to follow it (sequels, accessories, the next episode),
with weights w_i. A user's next new item, given the latest new item i they reached and the set S of
items they already have, is drawn from

    p(j | i, S) ∝ follow * w_i(j) + (1 - follow) * pop(j)    for j not in S,

with pop a Zipf popularity (a user's first item: pop alone). The best achievable list for a user on
a day is the unseen items ranked by p(j | latest item, S) (`oracle_top_k`); the expected hit rate of
a list is the mass it captures of that distribution (`captured_mass`). A bag-of-items model sees S
but not which item came last, so it cannot reach that bound; a model of order can.

What makes it a log: users' activity is skewed (log-normal rates), a user's steps within a day get
increasing timestamps, event types follow the same funnel as genrec_core/dev/planted.py, and a few
rows are exact duplicates. Nobody revisits an item (a revisit would not move the chain). The same
spec gives the same files and the same truth.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from genrec_core.dev.planted import _FUNNEL, event_table


@dataclass(frozen=True)
class SequenceSpec:
    """What to generate: `events` is the expected total over `days` ending on `end_date`."""

    users: int
    items: int
    days: int
    end_date: dt.date
    events: int
    seed: int = 0
    successors: int = 3  # items that can follow each item
    follow: float = 0.85  # weight of the latest item's successors against popularity
    zipf_exponent: float = 0.8
    activity_sigma: float = 0.9
    duplicate_share: float = 0.005

    def __post_init__(self) -> None:
        for name in ("users", "items", "days", "events", "successors"):
            if getattr(self, name) < 1:
                raise ValueError(f"planted sequences: {name} must be >= 1, got {getattr(self, name)}")
        if self.successors >= self.items:
            raise ValueError(f"planted sequences: successors ({self.successors}) must be fewer than items")

    @property
    def first_day(self) -> dt.date:
        return self.end_date - dt.timedelta(days=self.days - 1)


@dataclass
class SequenceLog:
    """The truth behind a planted sequence log, and its events (generator indices, not ids)."""

    spec: SequenceSpec
    transition: sp.csr_matrix  # [items, items]: w_i(j), rows sum to 1
    popularity: np.ndarray  # [items], sums to 1
    days: dict[dt.date, pa.Table] = field(default_factory=dict)  # raw rows per day, in the log contract
    pairs: dict[dt.date, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # (user, item), in time order

    def interactions(self, first: dt.date, last: dt.date) -> sp.csr_matrix:
        """Binary [users, items] of every (user, item) with an event on days first..last."""
        picked = [self.pairs[d] for d in sorted(self.pairs) if first <= d <= last]
        rows = np.concatenate([p[0] for p in picked]) if picked else np.zeros(0, np.int64)
        cols = np.concatenate([p[1] for p in picked]) if picked else np.zeros(0, np.int64)
        m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(self.spec.users, self.spec.items))
        m.data[:] = 1.0
        return m

    def latest_items(self, before: dt.date) -> np.ndarray:
        """[users] each user's latest item on the days before `before` (-1: none yet)."""
        latest = np.full(self.spec.users, -1, dtype=np.int64)
        for day in sorted(d for d in self.pairs if d < before):
            users, items = self.pairs[day]  # sorted by user, each user's items in time order
            last = np.flatnonzero(np.append(users[1:] != users[:-1], True)) if len(users) else users
            latest[users[last]] = items[last]
        return latest

    def next_probabilities(self, latest: np.ndarray, seen: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """p(j | latest item, seen) of every item for `users` ([len(users), items], rows sum to 1)."""
        follow = self.spec.follow
        has_latest = latest[users] >= 0
        chain = self.transition[np.maximum(latest[users], 0)].toarray()
        probs = np.where(
            has_latest[:, None], follow * chain + (1 - follow) * self.popularity[None, :], self.popularity[None, :]
        )
        rows = seen[users]
        probs[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = 0.0
        return probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-300)

    def oracle_top_k(self, users: np.ndarray, seen: sp.csr_matrix, day: dt.date, k: int) -> np.ndarray:
        """The best achievable lists [len(users), k] for `day`: unseen items by p(j | latest item before `day`)."""
        latest = self.latest_items(day)
        out = np.empty((len(users), k), dtype=np.int64)
        for start in range(0, len(users), 2048):
            chunk = users[start : start + 2048]
            probs = self.next_probabilities(latest, seen, chunk)
            probs[probs == 0.0] = -1.0  # seen: never listed ahead of a possible item
            out[start : start + len(chunk)] = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return out

    def captured_mass(self, users: np.ndarray, lists: np.ndarray, seen: sp.csr_matrix, day: dt.date) -> np.ndarray:
        """Per user, the probability that their next new item on `day` is in their list: the expected hit
        rate of the next item, free of the sampling noise of one day's events."""
        latest = self.latest_items(day)
        out = np.empty(len(users))
        for start in range(0, len(users), 2048):
            chunk = slice(start, start + 2048)
            probs = self.next_probabilities(latest, seen, users[chunk])
            top = lists[chunk]
            out[chunk] = np.where(top >= 0, np.take_along_axis(probs, np.maximum(top, 0), axis=1), 0.0).sum(axis=1)
        return out

    def next_items(self, day: dt.date) -> sp.csr_matrix:
        """Binary [users, items]: each user's first item on `day` (the next item after the days before)."""
        users, items = self.pairs.get(day, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        first = np.unique(users, return_index=True)[1]
        m = sp.csr_matrix(
            (np.ones(len(first), np.float32), (users[first], items[first])), shape=(self.spec.users, self.spec.items)
        )
        return m


def plant_sequences(spec: SequenceSpec, extra_days: int = 0) -> SequenceLog:
    """The truth and the events of days first_day .. end_date + `extra_days`."""
    rng = np.random.default_rng(spec.seed)
    n = spec.items
    popularity = 1.0 / (rng.permutation(n) + 1.0) ** spec.zipf_exponent
    popularity /= popularity.sum()
    followers = np.stack([rng.choice(np.delete(np.arange(n), i), spec.successors, replace=False) for i in range(n)])
    weights = rng.dirichlet(np.ones(spec.successors), size=n)
    transition = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(n), spec.successors), followers.ravel())), (n, n))
    log = SequenceLog(spec, transition, popularity)
    rate = rng.lognormal(0.0, spec.activity_sigma, size=spec.users)
    rate *= spec.events / (rate.sum() * spec.days)  # expected new items per user-day
    seen = np.zeros((spec.users, n), dtype=bool)
    latest = np.full(spec.users, -1, dtype=np.int64)
    for offset in range(spec.days + extra_days):
        day = spec.first_day + dt.timedelta(days=offset)
        steps = rng.poisson(rate)
        users = np.repeat(np.arange(spec.users), steps)
        items = np.empty(len(users), dtype=np.int64)
        for row, user in enumerate(users.tolist()):
            probs = popularity if latest[user] < 0 else _mixture(log, latest[user])
            probs = np.where(seen[user], 0.0, probs)
            total = probs.sum()
            if total <= 0:  # the user has every item: nothing new to take
                items[row] = -1
                continue
            items[row] = min(int(np.searchsorted(np.cumsum(probs), rng.random() * total, side="right")), n - 1)
            seen[user, items[row]] = True
            latest[user] = items[row]
        keep = items >= 0
        users, items = users[keep], items[keep]
        log.pairs[day] = (users, items)
        log.days[day] = _rows(spec, day, users, items, rng)
    return log


def _mixture(log: SequenceLog, item: int) -> np.ndarray:
    row = log.transition[item]
    chain = np.zeros(log.spec.items)
    chain[row.indices] = row.data
    return log.spec.follow * chain + (1 - log.spec.follow) * log.popularity


def _rows(spec: SequenceSpec, day: dt.date, users: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """The day's events as raw-log rows: each user's steps at increasing times inside the day (distinct
    microseconds), funnel event types, a few exact duplicates."""
    names = np.array([name for name, _ in _FUNNEL])
    probs = np.array([p for _, p in _FUNNEL])
    etype = names[rng.choice(len(names), size=len(users), p=probs / probs.sum())]
    # a user's k-th step of the day lands in the k-th of its equal slices of the day: times rise with the steps
    step = np.arange(len(users)) - np.searchsorted(users, users, side="left")
    per_user = np.bincount(users, minlength=spec.users)[users]
    slot = 86_400_000_000 // np.maximum(per_user, 1)
    micros = step * slot + (rng.random(len(users)) * (slot - 1)).astype(np.int64)
    ts = np.datetime64(day.isoformat(), "us") + micros.astype("timedelta64[us]")
    return event_table(spec.users, spec.items, users, items, etype, ts, spec.duplicate_share, rng)
