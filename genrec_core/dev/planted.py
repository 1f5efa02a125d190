"""A synthetic log whose best achievable ranking is known: a planted preference model.

Users are mixtures of taste topics, as in latent Dirichlet allocation: user u has topic
weights θ_u ~ Dirichlet(α) (a sparse α: most users have one to three tastes), each topic k
is a distribution φ_k over the launched items (Zipf popularity; an item's home topic weighs
it fully, other topics by `leakage`), and every new item u interacts with is drawn from

    p(i | u) = Σ_k θ_uk φ_k(i),

so the Bayes-optimal list for u on a day is the items u has not seen, ranked by p(i | u)
(`PlantedLog.oracle_top_k`). Nothing else carries signal: event types follow a funnel that
does not depend on the pair, and revisits repeat an item the user already has.

What makes it a log rather than a matrix:
- item popularity follows a Zipf law; some items launch during the window (new catalogue rows);
- user activity is skewed (log-normal rates), and some users join during the window;
- a share of events revisit an item the user already interacted with; a few rows are exact
  duplicates (an at-least-once shipper);
- events are view / click / add_to_cart / purchase rows with timestamps inside their day.

The same spec gives the same files and the same truth.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from genrec_core.contract import partition_name
from genrec_core.dev.generate import item_ids, user_ids
from genrec_core.storage import Storage, join

if TYPE_CHECKING:
    from genrec_core.dev.planted_sequences import SequenceLog

_FUNNEL = (("view", 0.63), ("click", 0.25), ("add_to_cart", 0.08), ("purchase", 0.04))


def user_chunk(n_items: int, most: int = 2048, budget_bytes: int = 1 << 28) -> int:
    """Users per chunk of a float64 [users, items] block: at most `most`, and within `budget_bytes`."""
    return max(1, min(most, budget_bytes // (8 * max(n_items, 1))))


def stable_top_k(values: np.ndarray, k: int) -> np.ndarray:
    """`np.argsort(-values, axis=1, kind="stable")[:, :k]` without sorting whole rows (a million items):
    per row, the entries at or above its k-th largest value, by value (descending) then index."""
    n = values.shape[1]
    if k >= n:
        return np.argsort(-values, axis=1, kind="stable")[:, :k]
    # the k-th largest selected from the top end: selecting the k-th smallest of -values took 50x longer
    # on a million items of the planted probabilities (introselect's worst case)
    kth = np.partition(values, n - k, axis=1)[:, n - k]
    out = np.empty((values.shape[0], k), dtype=np.int64)
    for row in range(values.shape[0]):
        candidates = np.flatnonzero(values[row] >= kth[row])
        out[row] = candidates[np.lexsort((candidates, -values[row, candidates]))[:k]]
    return out


@dataclass(frozen=True)
class PlantedSpec:
    """What to generate: `events` is the expected total over `days` ending on `end_date`."""

    users: int
    items: int
    days: int
    end_date: dt.date
    events: int
    seed: int = 0
    topics: int = 20
    topic_concentration: float = 0.1  # Dirichlet α of users' topic weights: small = few tastes per user
    leakage: float = 0.01  # weight of an item in topics other than its home topic
    zipf_exponent: float = 0.8  # item popularity inside each topic
    activity_sigma: float = 0.9  # spread of users' log activity rates
    new_user_share: float = 0.15  # users whose first active day falls inside the window
    new_item_share: float = 0.03  # items launched during the window
    revisit_share: float = 0.2
    duplicate_share: float = 0.005

    def __post_init__(self) -> None:
        for name in ("users", "items", "days", "events", "topics"):
            if getattr(self, name) < 1:
                raise ValueError(f"planted log: {name} must be >= 1, got {getattr(self, name)}")

    @property
    def first_day(self) -> dt.date:
        return self.end_date - dt.timedelta(days=self.days - 1)


@dataclass
class PlantedLog:
    """The truth behind a planted log, and its events (generator indices, not ids)."""

    spec: PlantedSpec
    user_topics: np.ndarray  # [users, topics] θ, rows sum to 1
    topic_items: np.ndarray  # [topics, items] item weights of each topic before launch masking
    launch_day: np.ndarray  # [items] day offset from first_day when the item becomes available
    join_day: np.ndarray  # [users] first day offset the user may be active
    days: dict[dt.date, pa.Table] = field(default_factory=dict)  # raw rows per day, in the log contract
    pairs: dict[dt.date, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # (user, item) per day

    def day_topics(self, day: dt.date) -> np.ndarray:
        """φ on `day` [topics, items]: each topic's distribution over the items launched by then."""
        offset = (day - self.spec.first_day).days
        phi = np.where(self.launch_day[None, :] <= offset, self.topic_items, 0.0)
        return phi / phi.sum(axis=1, keepdims=True)

    def probabilities(self, users: np.ndarray, day: dt.date) -> np.ndarray:
        """p(i | u) of every item for `users` on `day` (0 for items not launched yet)."""
        return self.user_topics[users] @ self.day_topics(day)

    def interactions(self, first: dt.date, last: dt.date) -> sp.csr_matrix:
        """Binary [users, items] of every (user, item) with an event on days first..last."""
        rows, cols = [], []
        day = first
        while day <= last:
            if day in self.pairs:
                rows.append(self.pairs[day][0])
                cols.append(self.pairs[day][1])
            day += dt.timedelta(days=1)
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        m = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(self.spec.users, self.spec.items))
        m.data[:] = 1.0
        return m

    def unseen_probabilities(self, users: np.ndarray, seen: sp.csr_matrix, day: dt.date) -> np.ndarray:
        """p(i | u) on `day` restricted to items u has not seen (rows renormalised): a new item's distribution."""
        probs = self.probabilities(users, day)
        rows = seen[users]
        probs[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = 0.0
        return probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-300)

    def posterior_topics(
        self, users: np.ndarray, seen: sp.csr_matrix, day: dt.date, iterations: int = 100
    ) -> np.ndarray:
        """E[θ_u | the items u interacted with], knowing the topics: LDA's variational E-step for one
        document per user (Blei et al. 2003, eqs. 6-7), the items of `seen` as its words."""
        from scipy.special import digamma

        offset = (day - self.spec.first_day).days
        phi = np.where(self.launch_day[None, :] <= offset, self.topic_items, 0.0) + 1e-300
        phi = phi / phi.sum(axis=1, keepdims=True)
        x = seen[users].tocoo()
        alpha = self.spec.topic_concentration
        gamma = np.full((len(users), self.spec.topics), alpha + x.nnz / max(len(users), 1) / self.spec.topics)
        phi_nz = phi[:, x.col].T  # [nnz, topics]
        for _ in range(iterations):
            weights = np.exp(digamma(gamma))
            responsibility = weights[x.row] * phi_nz
            responsibility /= responsibility.sum(axis=1, keepdims=True)
            gamma = alpha + np.asarray(
                sp.csr_matrix((np.ones(x.nnz), (x.row, np.arange(x.nnz))), shape=(len(users), x.nnz)) @ responsibility
            )
        return gamma / gamma.sum(axis=1, keepdims=True)

    def oracle_top_k(
        self, users: np.ndarray, seen: sp.csr_matrix, day: dt.date, k: int, knowing_users: bool = False
    ) -> np.ndarray:
        """The best achievable lists [len(users), k] for `day`: unseen items by p(i | u), ties by lower index.

        By default u's topic weights are what u's history in `seen` tells (their posterior mean, the
        topics known): the best any model of this log can do. `knowing_users` uses the true weights,
        a bound no model reaches from a finite history.
        """
        out = np.empty((len(users), k), dtype=np.int64)
        phi = self.day_topics(day)
        weights = self.user_topics[users] if knowing_users else self.posterior_topics(users, seen, day)
        size = user_chunk(self.spec.items)
        for start in range(0, len(users), size):
            chunk = slice(start, start + size)
            probs = weights[chunk] @ phi
            rows = seen[users[chunk]]
            probs[np.repeat(np.arange(len(probs)), np.diff(rows.indptr)), rows.indices] = 0.0
            if knowing_users:
                probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-300)  # as unseen_probabilities
            probs[probs == 0.0] = -1.0  # seen or not launched: never listed ahead of a possible item
            out[chunk] = stable_top_k(probs, k)
        return out

    def captured_mass(self, users: np.ndarray, lists: np.ndarray, seen: sp.csr_matrix, day: dt.date) -> np.ndarray:
        """Per user, the probability that their next new item on `day` is in their list (-1 entries count 0):
        the expected hit rate of the list, free of the sampling noise of one day's events."""
        from genrec_core.ranking.metrics import hit_matrix

        phi = self.day_topics(day)
        weights = self.user_topics[users]
        history = seen[users]
        rows = history.tocoo()
        seen_mass = np.bincount(rows.row, (weights[rows.row] * phi[:, rows.col].T).sum(axis=1), minlength=len(users))
        top = np.maximum(lists, 0)
        listed = np.einsum("ut,tuk->uk", weights, phi[:, top])
        listed[(lists < 0) | hit_matrix(top, history)] = 0.0  # padding, and seen items (probability 0)
        return listed.sum(axis=1) / np.maximum(weights.sum(axis=1) - seen_mass, 1e-300)


def plant(spec: PlantedSpec, extra_days: int = 0) -> PlantedLog:
    """The truth and the events of days first_day .. end_date + `extra_days` (days after the run's window,
    for judging its lists: they come from the same process)."""
    rng = np.random.default_rng(spec.seed)
    user_topics, topic_items = plant_topics(spec, rng)
    launch_day = np.zeros(spec.items, dtype=np.int64)
    launched = rng.random(spec.items) < spec.new_item_share
    launch_day[launched] = rng.integers(1, spec.days + extra_days, size=int(launched.sum()))
    join_day = np.zeros(spec.users, dtype=np.int64)
    joining = rng.random(spec.users) < spec.new_user_share
    join_day[joining] = rng.integers(1, spec.days + extra_days, size=int(joining.sum()))
    rate = rng.lognormal(0.0, spec.activity_sigma, size=spec.users)
    active_days = np.maximum(spec.days - join_day, 1)
    rate *= spec.events / (rate * active_days).sum()  # expected events per user-day; the total is spec.events
    log = PlantedLog(spec, user_topics, topic_items, launch_day, join_day)
    history: list[list[int]] = [[] for _ in range(spec.users)]
    for offset in range(spec.days + extra_days):
        day = spec.first_day + dt.timedelta(days=offset)
        users = np.repeat(np.arange(spec.users), rng.poisson(rate * (join_day <= offset)))
        items = _draw_items(log, users, day, rng)
        revisit = np.flatnonzero(rng.random(len(users)) < spec.revisit_share)
        for row in revisit:  # repeat an item the user already has (no new information)
            past = history[users[row]]
            if past:
                items[row] = past[int(rng.integers(0, len(past)))]
        for u, i in zip(users.tolist(), items.tolist()):
            history[u].append(i)
        log.pairs[day] = (users, items)
        log.days[day] = _rows(spec, day, users, items, rng)
    return log


def plant_topics(spec: PlantedSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Users' topic weights θ [users, topics] and the topics' item weights [topics, items] (unnormalised)."""
    user_topics = rng.dirichlet(np.full(spec.topics, spec.topic_concentration), size=spec.users)
    popularity = 1.0 / (rng.permutation(spec.items) + 1.0) ** spec.zipf_exponent
    home = rng.integers(0, spec.topics, size=spec.items)
    topic_items = popularity[None, :] * np.where(home[None, :] == np.arange(spec.topics)[:, None], 1.0, spec.leakage)
    return user_topics, topic_items


def _draw_items(log: PlantedLog, users: np.ndarray, day: dt.date, rng: np.random.Generator) -> np.ndarray:
    """One item per entry of `users`, each from its user's planted distribution by inverse CDF: the first item whose
    CDF θ_u · Φ(i) (Φ: the topics' cumulative distributions) exceeds a uniform, found by bisection, so no
    users x items row is formed (a million items). The uniforms go to the events in order of user."""
    uniforms = np.empty(len(users))
    uniforms[np.argsort(users, kind="stable")] = rng.random(len(users))
    cumulative = np.cumsum(log.day_topics(day), axis=1)
    weights = log.user_topics[users]
    lo, hi = np.zeros(len(users), np.int64), np.full(len(users), log.spec.items - 1, np.int64)
    while (lo < hi).any():  # the answer is in [lo, hi]; the last item's CDF counts as 1
        mid = (lo + hi) // 2
        above = np.einsum("et,te->e", weights, cumulative[:, mid]) > uniforms
        lo, hi = np.where(above, lo, mid + 1), np.where(above, mid, hi)
    return lo


def _rows(spec: PlantedSpec, day: dt.date, users: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """The day's events as raw-log rows (funnel event types, timestamps inside the day, a few duplicates)."""
    names = np.array([name for name, _ in _FUNNEL])
    probs = np.array([p for _, p in _FUNNEL])
    etype = names[rng.choice(len(names), size=len(users), p=probs / probs.sum())]
    ts = np.datetime64(day.isoformat(), "us") + rng.integers(0, 86_400_000_000, size=len(users)).astype(
        "timedelta64[us]"
    )
    return event_table(spec.users, spec.items, users, items, etype, ts, spec.duplicate_share, rng)


def event_table(
    n_users: int,
    n_items: int,
    users: np.ndarray,
    items: np.ndarray,
    etype: np.ndarray,
    ts: np.ndarray,
    duplicate_share: float,
    rng: np.random.Generator,
) -> pa.Table:
    """Events as raw-log rows in time order, a `duplicate_share` of them written twice (an at-least-once shipper)."""
    dup = np.flatnonzero(rng.random(len(users)) < duplicate_share)
    u, i, e, t = (np.concatenate([a, a[dup]]) for a in (users, items, etype, ts))
    order = np.argsort(t, kind="stable")
    return pa.table(
        {
            "user_id": pa.array(user_ids(n_users)[u[order]], pa.string()),
            "item_id": pa.array(item_ids(n_items)[i[order]], pa.string()),
            "event_type": pa.array(e[order], pa.string()),
            "event_ts": pa.array(t[order], pa.timestamp("us", tz="UTC")),
            "value": pa.nulls(len(order), pa.float64()),
        }
    )


def write_day(log: PlantedLog | SequenceLog, day: dt.date, out_uri: str, storage: Storage | None = None) -> int:
    """Write one generated day's raw partition (``out_uri/dt=D/part-00000.parquet``); return its rows."""
    table = log.days[day]
    (storage or Storage()).write_table(join(out_uri, partition_name(day), "part-00000.parquet"), table)
    return table.num_rows
