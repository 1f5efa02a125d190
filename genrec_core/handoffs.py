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
class Extracted(Handoff):
    extract_uri: str
    stats: dict[str, Any]  # the extract's stats.json: per-day and window counts, rejects by reason, timings


@dataclass(frozen=True)
class Trained(Handoff):
    model_uri: str
    model: str
    mode: str  # "finetune" | "retrain"
    reason: str
    fit_seconds: float | None = None
    tuned: float | None = None  # the search's best validation score, when the config was tuned

    @property
    def version(self) -> str:
        """Its name and the run date of the artifact, e.g. ``mult_vae@2026-11-20``."""
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
        )


@dataclass(frozen=True)
class PublishedObjects(Handoff):
    uri: str
    rows: int
    manifest: str
    retention_removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PublishedPostgres(Handoff):
    rows_published: int
    timings: dict[str, float] = field(default_factory=dict)
    dropped_dates: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunRecord(Handoff):
    """One night, as far as it got: built once, read by `genrec.runs` and `runs/dt=D/summary.json`."""

    run_date: str
    extracted: Extracted
    trained: Trained
    evaluated: Evaluated
    started_at: str | None = None  # monitoring only; nothing is keyed on it
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
    ) -> RunRecord:
        return cls(run_date.isoformat(), extracted, trained, evaluated, started_at)

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

    def for_postgres(self) -> dict[str, Any]:
        """What `genrec.runs` stores of the run (publish and rejection alike)."""
        return {
            "model": self.trained.model,
            "model_version": self.trained.version,
            "metrics": self.metrics(),
            "artifacts": self.artifacts(),
            "started_at": self.started_at,
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
            "metrics": self.evaluated.model,
            "baseline_metrics": {"popularity": self.evaluated.popularity},
            "gate": self.decision.to_xcom() if self.decision is not None else None,
            "rows_published": self.postgres.rows_published if self.postgres is not None else 0,
            "uris": self.artifacts(),
        }
