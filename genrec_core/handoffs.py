"""What each nightly stage hands the next: frozen dataclasses with a plain-JSON form for XCom.

The CLI passes these objects between the stages in one process; the DAG passes
`to_xcom()` dicts between tasks and rebuilds them with `from_xcom()`. The run record
is assembled once, by `RunRecord`, for the Postgres `genrec.runs` row and the summary.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Self

from genrec_core.layout import run_date_of_uri

Metrics = dict[str, Any]  # "ndcg@10" -> value (None when no user could be evaluated), "users_evaluated" -> n


class Handoff:
    """JSON round trip for a frozen dataclass whose fields are JSON values or other handoffs."""

    def to_xcom(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        return dataclasses.asdict(self)

    @classmethod
    def from_xcom(cls, data: dict[str, Any]) -> Self:
        assert dataclasses.is_dataclass(cls)
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                values[f.name] = _rebuild(hints[f.name], data[f.name])
        return cls(**values)


def _rebuild(hint: Any, value: Any) -> Any:
    """`value` as `hint` when that is a handoff class (or an optional one); else as it is."""
    if value is None:
        return None
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Handoff) and isinstance(value, dict):
            return candidate.from_xcom(value)
    return value


@dataclass(frozen=True)
class StageCost(Handoff):
    """A stage's wall seconds and peak resident memory (genrec_core/meter.py)."""

    seconds: float
    peak_rss_mb: float  # the stage's own process
    children_peak_rss_mb: float = 0.0  # its child processes together (Spark's JVM in local mode)

    @classmethod
    def worst(cls, costs: list[StageCost | None]) -> StageCost | None:
        """Parallel parts of one stage (score shards): the longest time and the largest peaks."""
        known = [c for c in costs if c is not None]
        if not known:
            return None
        return cls(
            max(c.seconds for c in known),
            max(c.peak_rss_mb for c in known),
            max(c.children_peak_rss_mb for c in known),
        )


@dataclass(frozen=True)
class Extracted(Handoff):
    extract_uri: str
    stats: dict[str, Any]  # the extract's stats.json: per-day and window counts, rejects by reason, timings
    cost: StageCost | None = None


@dataclass(frozen=True)
class Trained(Handoff):
    model_uri: str
    model: str
    mode: str  # "finetune" | "retrain"
    reason: str
    fit_seconds: float | None = None
    tuned: float | None = None  # the search's best validation score, when the config was tuned
    selection: dict[str, Any] | None = None  # auto: this night's selection (winner, each candidate); None if none ran
    selected_on: str | None = None  # auto: the date of the selection the served model comes from
    cost: StageCost | None = None

    @property
    def version(self) -> str:
        """The served model and the run date of its artifact, e.g. ``mult_vae@2026-11-20`` or
        ``rec_vae+ease@2026-11-20`` (a generative model with its linear expert)."""
        return f"{self.model}@{run_date_of_uri(self.model_uri)}"


@dataclass(frozen=True)
class Champion(Handoff):
    version: str | None
    metrics: Metrics


@dataclass(frozen=True)
class Evaluated(Handoff):
    model: Metrics
    popularity: Metrics
    champion: Champion | None = None
    baselines: dict[str, Metrics] = field(default_factory=dict)  # the closed-form baselines that fit, on day D
    cost: StageCost | None = None


@dataclass(frozen=True)
class GateDecision(Handoff):
    passed: bool
    forced: bool
    reasons: list[str] = field(default_factory=list)
    metric: str = ""
    challenger: float | None = None
    champion: float | None = None
    champion_version: str | None = None
    popularity: float | None = None
    champion_metrics: Metrics | None = None
    baseline: str | None = None  # the strongest closed-form baseline on the metric
    baseline_value: float | None = None
    cost: StageCost | None = None


@dataclass(frozen=True)
class Scored(Handoff):
    scored_uri: str
    users: int
    model_users: int
    fallback_users: int
    rows: int
    n_shards: int
    engine: str = "local"
    seconds: float = 0.0
    cost: StageCost | None = None

    @classmethod
    def combine(cls, shards: list[Scored]) -> Scored:
        """The totals of every shard of one date."""
        if not shards:
            raise ValueError("no scored shards to combine")
        first = shards[0]
        return cls(
            first.scored_uri,
            sum(s.users for s in shards),
            sum(s.model_users for s in shards),
            sum(s.fallback_users for s in shards),
            sum(s.rows for s in shards),
            first.n_shards,
            first.engine,
            max(s.seconds for s in shards),
            StageCost.worst([s.cost for s in shards]),
        )


@dataclass(frozen=True)
class PublishedObjects(Handoff):
    uri: str  # the Delta table of the lists
    rows: int
    version: int  # the table version that committed the date
    retention_removed: list[str] = field(default_factory=list)
    cost: StageCost | None = None


@dataclass(frozen=True)
class PublishedPostgres(Handoff):
    rows_published: int
    timings: dict[str, float] = field(default_factory=dict)
    dropped_dates: list[str] = field(default_factory=list)
    cost: StageCost | None = None


@dataclass(frozen=True)
class RunRecord(Handoff):
    """One night, as far as it got: built once, read by `genrec.runs` and `runs/dt=D/summary.json`."""

    run_date: str
    extracted: Extracted
    trained: Trained
    evaluated: Evaluated
    started_at: str | None = None  # monitoring only; nothing is keyed on it
    run_id: str | None = None  # the orchestrator's run id, kept in the object store's commit (audit only)
    decision: GateDecision | None = None
    scored: Scored | None = None
    objects: PublishedObjects | None = None
    postgres: PublishedPostgres | None = None

    @classmethod
    def start(
        cls,
        run_date: dt.date,
        extracted: Extracted,
        trained: Trained,
        evaluated: Evaluated,
        started_at: str | None = None,
        run_id: str | None = None,
    ) -> RunRecord:
        return cls(run_date.isoformat(), extracted, trained, evaluated, started_at, run_id)

    def but(self, **changes: Any) -> RunRecord:
        """This record with later stages' results filled in."""
        return dataclasses.replace(self, **changes)

    def artifacts(self) -> dict[str, str]:
        uris = {"extract": self.extracted.extract_uri, "model": self.trained.model_uri}
        if self.scored is not None:
            uris["scored"] = self.scored.scored_uri
        if self.objects is not None:
            uris["recommendations"] = self.objects.uri
        return uris

    def metrics(self) -> Metrics:
        """The served model's metrics, with the gate's decision when it was taken."""
        gate = {"gate": self.decision.to_xcom()} if self.decision is not None else {}
        return {**self.evaluated.model, **gate}

    def stages(self) -> dict[str, dict[str, float]]:
        """Wall seconds and peak RSS of each stage that ran and was measured, in run order."""
        parts = {
            "extract": self.extracted,
            "train": self.trained,
            "evaluate": self.evaluated,
            "gate": self.decision,
            "score": self.scored,
            "publish_object_store": self.objects,
            "publish_postgres": self.postgres,
        }
        costs = {name: getattr(part, "cost", None) for name, part in parts.items() if part is not None}
        return {
            name: {key: round(value, 2) for key, value in dataclasses.asdict(cost).items()}
            for name, cost in costs.items()
            if cost is not None
        }

    def selection(self) -> dict[str, Any] | None:
        """This night's model selection (auto), or where the served model's selection came from."""
        if self.trained.selection is not None:
            return self.trained.selection
        if self.trained.selected_on is not None:
            return {"winner": self.trained.model, "selected_on": self.trained.selected_on}
        return None

    def for_postgres(self) -> dict[str, Any]:
        """What `genrec.runs` stores of the run (publish and rejection alike)."""
        return {
            "model": self.trained.model,
            "model_version": self.trained.version,
            "metrics": self.metrics(),
            "artifacts": self.artifacts(),
            "started_at": self.started_at,
            "selection": self.selection(),
            "stages": self.stages(),
        }

    def summary(self) -> dict[str, Any]:
        """The run's JSON summary (the CLI prints it; both the CLI and the DAG write it to runs/dt=D/)."""
        stats = self.extracted.stats
        return {
            "run_date": self.run_date,
            "events_read": stats["events_read"],
            "events_rejected": stats["events_rejected"],
            "rejected_by_reason": stats["rejected_by_reason"],
            "users": stats["users"],
            "items": stats["items"],
            "model": self.trained.model,
            "model_version": self.trained.version,
            "training": {
                "mode": self.trained.mode,
                "reason": self.trained.reason,
                "fit_seconds": self.trained.fit_seconds,
            },
            "selection": self.selection(),
            "metrics": self.evaluated.model,
            "baseline_metrics": {"popularity": self.evaluated.popularity, **self.evaluated.baselines},
            "gate": self.decision.to_xcom() if self.decision is not None else None,
            "rows_published": self.postgres.rows_published if self.postgres is not None else 0,
            "stages": self.stages(),
            "uris": self.artifacts(),
        }
