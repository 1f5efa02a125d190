"""`genrec bench scale`: what each model costs, and how good its lists are, as the catalogue grows.

The data: the planted log's topic model (genrec_core/dev/planted.py: users mix a few taste topics,
each topic a Zipf law over the items) drawn topic-first, which scales to a million items: each event
draws a topic from the user's weights θ_u, then an item from that topic. Each user's distinct items
are split at random: 70% fit, 10% validation (early stopping, the expert's settings), 20% test. The
best achievable list ranks the unseen items by p(i | history) with the topics known (the posterior of
θ_u, as the nightly benchmark's oracle); every model's recall@20 is also given as a share of its.

Per model, each in its own process (so its peak RSS is its own): training seconds per epoch (the
updates alone), seconds to the best epoch (validation included), fit seconds, peak RSS, scoring
users/s over every user (the scorer's chunked exact top-k, seen items masked) and its ratio to a floor
measured in the parent (a bare dense [chunk, 200] @ [200, items] product + torch.topk, same chunk
size), and recall@20 / NDCG@20 on the test items. The scoring speed is that of the evaluation's pass over
every test user (lists and metrics; the metrics are a small part of it), so a slow scorer is run once. A
hybrid row (network + linear expert) also reports its network alone (`network_alone`: the same weights,
the expert left out), the part the hybrid is checked against.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec_core.dev.planted import PlantedLog, PlantedSpec, plant_topics

K = 20
SEED = 0
FULL_SOFTMAX_MAX_ITEMS = 100_000  # above this the full-softmax row is left out: one epoch is hours here
_DAY = dt.date(2026, 1, 1)


@dataclass(frozen=True)
class Row:
    """One line of the table: a model with its bench settings."""

    label: str
    model: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class ScalePlan:
    """How every case of a run is sized and trained; `settings` override a model's config (by model name) in
    every row of that model, e.g. {"sansa": {"weights_per_item": 50}}."""

    users: int = 10_000
    events_per_user: int = 40
    threads: int = 2
    epochs: int = 30
    patience: int = 5
    include: frozenset[str] | None = None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ScaleData:
    truth: PlantedLog
    fit: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix

    @property
    def history(self) -> sp.csr_matrix:
        """What a list is built from at test time: everything but the test items."""
        return (self.fit + self.valid).tocsr()


def draw(items: int, users: int, events_per_user: int, seed: int = SEED) -> ScaleData:
    """A planted catalogue of `items`, about `events_per_user` events for each of `users` users."""
    spec = PlantedSpec(users=users, items=items, days=1, end_date=_DAY, events=users * events_per_user, seed=seed)
    rng = np.random.default_rng(seed)
    user_topics, topic_items = plant_topics(spec, rng)
    truth = PlantedLog(spec, user_topics, topic_items, np.zeros(items, np.int64), np.zeros(users, np.int64))
    activity = rng.lognormal(0.0, spec.activity_sigma, size=users)
    counts = 3 + rng.poisson(activity * max(events_per_user - 3, 0) / activity.mean())
    event_users = np.repeat(np.arange(users), counts)
    cumulative = np.cumsum(user_topics, axis=1)
    topic = np.minimum((cumulative[event_users] < rng.random(len(event_users))[:, None]).sum(axis=1), spec.topics - 1)
    item_cdf = np.cumsum(topic_items / topic_items.sum(axis=1, keepdims=True), axis=1)
    event_items = np.empty(len(event_users), dtype=np.int64)
    for k in range(spec.topics):
        at = np.flatnonzero(topic == k)
        event_items[at] = np.minimum(np.searchsorted(item_cdf[k], rng.random(len(at)), side="right"), items - 1)
    pairs = np.unique(event_users * items + event_items)
    share = rng.random(len(pairs))

    def matrix(keep: np.ndarray) -> sp.csr_matrix:
        chosen = pairs[keep]
        ones = np.ones(len(chosen), np.float32)
        return sp.csr_matrix((ones, (chosen // items, chosen % items)), shape=(users, items))

    return ScaleData(truth, matrix(share >= 0.3), matrix((share >= 0.2) & (share < 0.3)), matrix(share < 0.2))


def oracle_lists(truth: PlantedLog, users: np.ndarray, seen: sp.csr_matrix, k: int = K) -> np.ndarray:
    """The best achievable lists: unseen items by the posterior predictive (ties to the lower item)."""
    return truth.oracle_top_k(users, seen, _DAY, k)


def oracle_metrics(data: ScaleData, k: int = K) -> dict[str, float]:
    from genrec_core.ranking.metrics import metrics_for_lists

    users = np.flatnonzero(np.diff(data.test.indptr) > 0)
    lists = oracle_lists(data.truth, users, data.history, k)
    per_user = metrics_for_lists(lists, data.test[users], k)
    return {f"recall@{k}": float(per_user["recall"].mean()), f"ndcg@{k}": float(per_user["ndcg"].mean())}


def floor_users_per_s(items: int, users: int, chunk: int, k: int = K, width: int = 200) -> float:
    """A bare dense [chunk, width] @ [width, items] + torch.topk loop over `users` users: the scoring floor."""
    import torch

    generator = torch.Generator().manual_seed(0)
    latent, table = torch.randn(chunk, width, generator=generator), torch.randn(width, items, generator=generator)
    torch.topk(latent @ table, k, dim=1)  # warm-up
    started = time.perf_counter()
    for start in range(0, users, chunk):
        torch.topk(latent[: min(chunk, users - start)] @ table, k, dim=1)
    return users / (time.perf_counter() - started)


def rows_for(items: int, plan: ScalePlan) -> list[Row]:
    """The models measured at a catalogue size (EASE only up to its item limit, the full softmax up to
    FULL_SOFTMAX_MAX_ITEMS), with the plan's settings; only the plan's `include` labels when it names some."""
    from genrec_core.models.ease import EASEConfig

    vae: dict[str, Any] = {"epochs": plan.epochs}  # narrower above 500k items by the VAEs' defaults (narrow_above)
    rows = [Row("popularity", "popularity", {}), Row("item_knn", "item_knn", {})]
    if items <= EASEConfig().max_items:
        rows.append(Row("ease", "ease", {}))
    rows.append(Row("sansa", "sansa", {}))
    if items <= FULL_SOFTMAX_MAX_ITEMS:
        rows.append(Row("mult_vae/full", "mult_vae", {**vae, "linear_expert": False, "sampled_softmax_above": items}))
    rows.append(Row("mult_vae/sampled", "mult_vae", {**vae, "linear_expert": False, "sampled_softmax_above": 0}))
    rows.append(Row("mult_vae+expert", "mult_vae", {**vae, "linear_expert": True}))  # the softmax by the defaults
    return [
        Row(row.label, row.model, {**row.settings, **plan.settings.get(row.model, {})})
        for row in rows
        if plan.include is None or row.label in plan.include
    ]


def measure(data_file: str, row: Row, threads: int, patience: int) -> dict[str, Any]:
    """Fit `row`'s model on the saved planted data and measure it (runs in a child process)."""
    import torch

    from genrec_core.config import SelectionConfig
    from genrec_core.dev.benchmarks.common import peak_rss_mb
    from genrec_core.dev.benchmarks.quality_bench import interactions_of
    from genrec_core.models.base import FitOptions, Validation
    from genrec_core.models.neural import NeuralRecommender
    from genrec_core.models.registry import build_model, model_spec
    from genrec_core.ranking.metrics import evaluate

    torch.set_num_threads(threads)
    saved = np.load(data_file)
    fit, valid, test = (
        sp.csr_matrix((saved[f"{n}_data"], saved[f"{n}_indices"], saved[f"{n}_indptr"]), shape=tuple(saved["shape"]))
        for n in ("fit", "valid", "test")
    )
    history = (fit + valid).tocsr()
    config = model_spec(row.model).parse_config(row.settings) if row.settings else None
    model = build_model(row.model, config)
    # early stopping as the nightly selection stops a candidate: `patience` epochs and its updates' patience
    selection = SelectionConfig()
    validation = Validation(
        fit,
        valid,
        k=K,
        patience=patience,
        patience_updates=selection.patience_updates,
        max_users=selection.validation_users,
    )
    model.fit(interactions_of(fit), FitOptions(SEED, "cpu", threads, validation if model.spec.iterative else None))
    result: dict[str, Any] = {"label": row.label, "model": row.model, "settings": row.settings}
    if isinstance(model, NeuralRecommender):
        log = model.training_log
        result.update(
            epochs_run=len(log),
            best_epoch=model.best_epoch,
            epoch_seconds=round(float(np.median([e["train_seconds"] for e in log])), 3),
            seconds_to_best=round(log[model.best_epoch - 1]["seconds"], 2),
            sampled_softmax=bool(model.config.samples_softmax(fit.shape[1])),
            expert=type(model.expert).__name__ if model.expert is not None else None,
        )
    result["fit_seconds"] = round(model.fit_seconds or 0.0, 2)
    started = time.perf_counter()  # one pass: lists for every test user (the scorer's chunks), then their metrics
    metrics = evaluate(model, history, test, K)
    result["scoring_users_per_s"] = round(metrics["users_evaluated"] / (time.perf_counter() - started), 1)
    result.update({f"recall@{K}": round(metrics[f"recall@{K}"], 4), f"ndcg@{K}": round(metrics[f"ndcg@{K}"], 4)})
    if isinstance(model, NeuralRecommender) and model.expert is not None:
        model.expert = None  # the same network alone: the hybrid's first part, without training it twice
        alone = evaluate(model, history, test, K)
        result["network_alone"] = {
            f"recall@{K}": round(alone[f"recall@{K}"], 4),
            f"ndcg@{K}": round(alone[f"ndcg@{K}"], 4),
        }
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def _child(queue: Any, data_file: str, row: Row, threads: int, patience: int) -> None:
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s {row.label}: %(message)s")
    try:
        queue.put(measure(data_file, row, threads, patience))
    except BaseException as exc:
        queue.put({"label": row.label, "model": row.model, "error": repr(exc)})


def _in_child(data_file: str, row: Row, threads: int, patience: int) -> dict[str, Any]:
    from genrec_core.dev.benchmarks.quality_bench import _result_of

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, data_file, row, threads, patience))
    proc.start()
    result = _result_of(proc, queue, row.label, row.model)
    proc.join()
    return {"label": row.label, "model": row.model, "error": result["error"]} if "error" in result else result


def _save_data(data: ScaleData, folder: Path) -> str:
    path = folder / f"planted-{data.fit.shape[1]}.npz"
    parts = {
        f"{n}_{a}": getattr(getattr(data, n), a)
        for n in ("fit", "valid", "test")
        for a in ("data", "indices", "indptr")
    }
    np.savez(path, shape=np.array(data.fit.shape), **parts)
    return str(path)


def run_case(items: int, plan: ScalePlan) -> dict[str, Any]:
    """Every row at one catalogue size."""
    import torch

    from genrec_core.ranking.topk import chunk_rows

    torch.set_num_threads(plan.threads)
    started = time.perf_counter()
    data = draw(items, plan.users, plan.events_per_user)
    case: dict[str, Any] = {
        "items": items,
        "users": plan.users,
        "fit_interactions": int(data.fit.nnz),
        "items_with_interactions": int(np.count_nonzero(np.diff(data.fit.tocsc().indptr))),
        "draw_seconds": round(time.perf_counter() - started, 1),
    }
    case["best_achievable"] = {key: round(value, 4) for key, value in oracle_metrics(data).items()}
    chunk = chunk_rows(items)
    case["scoring_chunk"] = chunk
    case["floor_users_per_s"] = round(floor_users_per_s(items, min(plan.users, 20 * chunk), chunk), 1)
    with tempfile.TemporaryDirectory(prefix="genrec-bench-scale-") as folder:
        data_file = _save_data(data, Path(folder))
        case["rows"] = [_in_child(data_file, row, plan.threads, plan.patience) for row in rows_for(items, plan)]
    best = case["best_achievable"][f"recall@{K}"]
    for row in case["rows"]:
        if "error" not in row:
            row["recall_vs_best"] = round(row[f"recall@{K}"] / best, 4) if best else None
            row["scoring_vs_floor"] = round(row["scoring_users_per_s"] / case["floor_users_per_s"], 3)
    case["checks"] = checks(case["rows"])
    return case


def checks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's comparisons where both sides ran: sampled vs full softmax, SANSA vs EASE, the hybrid vs its parts."""
    by = {row["label"]: row for row in rows if "error" not in row}
    out: dict[str, Any] = {}
    if "mult_vae/sampled" in by and "mult_vae/full" in by:
        sampled, full = by["mult_vae/sampled"], by["mult_vae/full"]
        out["sampled_vs_full"] = {
            "recall_ratio": round(sampled[f"recall@{K}"] / max(full[f"recall@{K}"], 1e-12), 4),
            "epoch_seconds_ratio": round(sampled["epoch_seconds"] / max(full["epoch_seconds"], 1e-12), 4),
        }
    if "sansa" in by and "ease" in by:
        out["sansa_vs_ease"] = {"ndcg_ratio": round(by["sansa"][f"ndcg@{K}"] / max(by["ease"][f"ndcg@{K}"], 1e-12), 4)}
    hybrid = by.get("mult_vae+expert")
    if hybrid is not None:
        # the hybrid's own network without the expert when measured, else the plain row trained alike
        vae = hybrid.get("network_alone") or by.get(
            "mult_vae/sampled" if hybrid.get("sampled_softmax") else "mult_vae/full"
        )
        linear = by.get("ease" if hybrid.get("expert") == "EASE" else "sansa")
        if vae is not None and linear is not None:
            out["hybrid_vs_parts"] = {
                "hybrid": hybrid[f"recall@{K}"],
                "network": vae[f"recall@{K}"],
                "expert": linear[f"recall@{K}"],
                "beats_both": hybrid[f"recall@{K}"] > max(vae[f"recall@{K}"], linear[f"recall@{K}"]),
            }
    return out


def run(sizes: list[int], plan: ScalePlan) -> dict[str, Any]:
    """One case per catalogue size in `sizes`."""
    cases = [run_case(items, plan) for items in sizes]
    return {
        "k": K,
        "events_per_user": plan.events_per_user,
        "epochs_cap": plan.epochs,
        "patience": plan.patience,
        "settings": plan.settings,
        "cases": cases,
    }
