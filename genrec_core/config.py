"""Typed settings, loaded and validated once at the edge.

Sources, highest priority first: explicit overrides (CLI flags, DAG params),
``GENREC_*`` environment variables (nested with ``__``, e.g.
``GENREC_MULT_VAE__EPOCHS=5``), the TOML file named by ``GENREC_CONFIG``
(or passed in), then the defaults below.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from genrec_core.contract import DEFAULT_EVENT_WEIGHTS, EVENT_TYPES
from genrec_core.errors import ConfigError
from genrec_core.models.registry import model_names, model_spec, model_specs, variant_names
from genrec_core.models.spec import ModelConfig

AUTO = "auto"  # `model = "auto"`: choose the served model on every full retrain (genrec_core/train/selection.py)
METRIC_NAMES = ("ndcg", "recall", "precision", "map")

# The TOML file of the `load_settings` call in progress (so loading never touches os.environ).
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("genrec_config_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TuningConfig(_Section):
    """Optional hyperparameter search before a full retrain (genrec_core/train/tuning.py): trials train on the
    window's days before D-1 and are judged on D-1, so day D stays unseen for the gate."""

    enabled: bool = Field(False, description="search before each full retrain; fine-tunes keep the tuned config")
    trials: int = Field(20, ge=1, description="most trials per search")
    timeout_minutes: float | None = Field(60.0, gt=0, description="wall-clock budget of one search; None = trials only")
    patience: int = Field(5, ge=1, description="early stopping of a neural trial, in epochs")


class SelectionConfig(_Section):
    """How `model = "auto"` chooses the served model on each full retrain (genrec_core/train/selection.py):
    every candidate is fitted on the window's days before D-1 and judged on D-1, so day D stays unseen
    for the gate; the winner is trained on all days before D, and fine-tune nights continue it."""

    candidates: tuple[str, ...] | None = Field(
        None,
        description="models to try, e.g. ['ease', 'rec_vae+ease']; None = every registered model, and "
        "<model>+ease for the generative ones, that fits the catalogue, except cfgan (hundreds of epochs: "
        "add 'cfgan' or 'cfgan+ease' to try it)",
    )
    metric: Literal["ndcg", "recall", "precision", "map"] = Field("ndcg", description="judged at k on day D-1")
    budget_minutes: float = Field(
        30.0, gt=0, description="wall clock of one selection; a candidate still training then is skipped"
    )
    patience: int = Field(5, ge=1, description="epochs without a better validation score end a neural candidate")
    patience_updates: int = Field(
        100,
        ge=0,
        description="...and at least this many optimizer updates (a small data set's epoch is a few updates, "
        "its validation curve noisy: slow learners were cut short at 5 epochs)",
    )
    validation_users: int = Field(
        5_000,
        ge=0,
        description="a neural candidate's early stopping judges at most this many users of day D-1 (a fixed "
        "sample; 0: all): each check ranks every item for each, as costly as the epoch's updates at 1M items",
    )
    max_epochs: int = Field(
        200,
        ge=1,
        description="cap of a neural candidate's epochs (early stopping ends it sooner); the winner "
        "is then trained for its best epoch count",
    )
    fallback: tuple[str, ...] = Field(
        ("ease", "item_knn", "popularity"),
        description="served, first that fits, when there is no day D-1 to judge on (the window is too short)",
    )

    @field_validator("candidates", "fallback")
    @classmethod
    def _known_variants(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        unknown = [name for name in value if name not in variant_names()]
        if unknown:
            raise ValueError(f"unknown models {unknown}; expected some of {list(variant_names())}")
        if not value:
            raise ValueError("name at least one model, or leave the setting out for every model")
        return value


class ExtractConfig(_Section):
    """How raw logs become implicit feedback (see the README's extract section)."""

    format: Literal["parquet", "csv", "jsonl"] = Field("parquet", description="file format of the raw partitions")
    incremental: bool = Field(True, description="reuse yesterday's extract and read only day D when possible")
    max_events_per_user_day: int | None = Field(
        5000, ge=1, description="bot guard: a user-day with more events goes to quarantine whole; None = no cap"
    )
    kcore: int = Field(0, ge=0, description="keep only users and items with at least this many positive pairs; 0 = off")
    decay_half_life_days: float | None = Field(
        None, gt=0, description="a day's weight halves every this many days before D; None = no decay"
    )
    count_weight: float = Field(
        0.0, ge=0, description="pair weight = strongest event weight + count_weight * ln(events of the pair)"
    )
    broadcast_vocab_max: int = Field(
        5_000_000, ge=0, description="vocabularies up to this size are broadcast to the executors when indexing"
    )


class GateConfig(_Section):
    """Champion/challenger gate on the held-out day (see genrec_core/evaluate/gate.py)."""

    metric: Literal["ndcg", "recall", "precision"] = Field("ndcg", description="compared at k")
    margin: float = Field(0.05, ge=0.0, lt=1.0, description="allowed relative drop below the champion")
    min_users: int = Field(10, ge=1, description="fewest users with held-out items for a meaningful comparison")
    compare_baselines: bool = Field(
        True,
        description="also reject a model more than `margin` below the strongest closed-form baseline (EASE, ItemKNN)",
    )


class ScoreConfig(_Section):
    """How the score stage runs (see the README's scoring section)."""

    chunk_size: int = Field(0, ge=0, description="users per scoring chunk; 0 = from chunk_budget_mb")
    chunk_budget_mb: int = Field(256, ge=1, description="memory of one chunk's score matrix when auto-sized")
    block_users: int = Field(100_000, ge=1, description="users whose history is held in memory at once")
    min_history: int = Field(3, ge=1, description="users with fewer accepted events get the fallback list")
    fallback_days: int = Field(7, ge=1, description="popularity window of the fallback list, days through D")
    shards: int = Field(1, ge=1, le=1024, description="independent scoring jobs (hash ranges of user ids)")
    engine: Literal["local", "spark"] = Field(
        "local", description="local: one process per shard (Airflow maps them); spark: one Spark job, a task per shard"
    )
    exclusions_uri: str | None = Field(None, description="Parquet with an item_id column: never recommend these")
    allowlist_uri: str | None = Field(None, description="Parquet with an item_id column: recommend only these")


class TrainConfig(_Section):
    """Fine-tune or retrain, and where checkpoints go (see genrec_core/train/plan.py)."""

    mode: Literal["auto", "finetune", "retrain"] = Field(
        "auto", description="auto: fine-tune from D-1's model unless a full retrain is due"
    )
    retrain_every_days: int = Field(7, ge=1, description="auto mode: full retrain when the last one is this old")
    retrain_vocab_growth: float = Field(
        0.1, ge=0.0, description="auto mode: full retrain when the item vocabulary grew by more than this share"
    )
    checkpoint_dir: str | None = Field(
        None, description="local directory for training checkpoints (resume after a crash); None = system temp dir"
    )


# Settings that moved into a section: the old name fails with a message naming the new one.
MOVED_SETTINGS = {
    "score_chunk_size": "score.chunk_size",
    "score_chunk_budget_mb": "score.chunk_budget_mb",
    "score_block_users": "score.block_users",
    "min_history": "score.min_history",
    "fallback_days": "score.fallback_days",
    "score_shards": "score.shards",
    "score_engine": "score.engine",
    "exclusions_uri": "score.exclusions_uri",
    "allowlist_uri": "score.allowlist_uri",
    "train_mode": "train.mode",
    "retrain_every_days": "train.retrain_every_days",
    "retrain_vocab_growth": "train.retrain_vocab_growth",
    "checkpoint_dir": "train.checkpoint_dir",
}


def _moved_setting_message(old: str) -> str:
    new = MOVED_SETTINGS[old]
    section, field = new.split(".")
    return (
        f"setting '{old}' moved to '{new}' (TOML: [{section}] {field}; "
        f"environment: GENREC_{section.upper()}__{field.upper()})"
    )


class S3Config(_Section):
    """Where ``s3://`` URIs point. Empty endpoint means AWS's default."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None


class Settings(BaseSettings):
    """Everything a nightly run needs. Frozen after validation."""

    model_config = SettingsConfigDict(
        env_prefix="GENREC_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        validate_default=True,
    )

    events_uri: str = "file://./.state/demo/events"
    output_uri: str = "file://./.state/demo/output"
    model: str = Field(
        AUTO, description="'auto' (choose on every full retrain) or a registered model (genrec_core/models/registry.py)"
    )
    k: int = Field(10, ge=1, le=1000)
    lookback_days: int = Field(30, ge=2, le=3650)
    seed: int = 42
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    rating_threshold: float = 4.0
    max_rejected_share: float = Field(0.05, ge=0.0, le=1.0)
    spark_master: str = "local[*]"
    spark_driver_memory: str = "2g"
    keep_dates: int = Field(30, ge=1, description="published dates kept in Postgres and object storage")
    publish_workers: int = Field(2, ge=1, le=32, description="parallel COPY connections")
    torch_threads: int = Field(0, ge=0, description="0 keeps torch's default")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    pg_dsn: SecretStr | None = None
    s3: S3Config = Field(default_factory=S3Config)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    force_publish: bool = Field(False, description="publish even when the quality gate rejects (recorded as forced)")
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    # One section per registered model with settings ([mult_vae], [ease], ...), from the model registry.
    __annotations__.update({spec.name: spec.config_class for spec in model_specs() if spec.config_class})
    locals().update(
        {spec.name: Field(default_factory=spec.config_class) for spec in model_specs() if spec.config_class}
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_names(cls, values: Any) -> Any:
        moved = sorted(set(values) & set(MOVED_SETTINGS)) if isinstance(values, dict) else []
        if moved:
            raise ValueError("; ".join(_moved_setting_message(old) for old in moved))
        return values

    @model_validator(mode="after")
    def _tuning_needs_a_named_model(self) -> Settings:
        if self.tuning.enabled and self.model == AUTO:
            raise ValueError(
                "tuning.enabled needs a named model: with model = 'auto' the selection chooses the model and "
                "its recipe on day D-1 itself; set model to the one to tune, or turn tuning off"
            )
        return self

    @field_validator("model")
    @classmethod
    def _registered_model(cls, value: str) -> str:
        if value != AUTO and value not in model_names():
            raise ValueError(f"unknown model {value!r}; expected {AUTO!r} or one of {list(model_names())}")
        return value

    @field_validator("events_uri", "output_uri")
    @classmethod
    def _uri_scheme(cls, value: str) -> str:
        if not (value.startswith("file://") or value.startswith("s3://") or value.startswith("/")):
            raise ValueError("expected a file://, s3:// URI or an absolute path")
        return value.rstrip("/")

    @field_validator("event_weights")
    @classmethod
    def _known_event_types(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; expected some of {list(EVENT_TYPES)}")
        if any(w < 0 for w in value.values()):
            raise ValueError("event weights must be >= 0")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _CONFIG_FILE.get() or os.environ.get("GENREC_CONFIG")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

    def model_section(self, name: str | None = None) -> ModelConfig | None:
        """The typed config section of model `name` (default: the configured model); None if it has none
        (or for `auto`, which has a section per candidate)."""
        if (name or self.model) == AUTO:
            return None
        spec = model_spec(name or self.model)
        return getattr(self, spec.name) if spec.config_class is not None else None

    def updated(self, **changes: Any) -> Settings:
        """A copy with `changes` validated again; a dict given for a section is merged into that section."""
        values = self.model_dump()
        for key, value in changes.items():
            current = values.get(key)
            merge = isinstance(value, dict) and isinstance(current, dict) and key != "event_weights"
            values[key] = {**cast(dict[str, Any], current), **value} if merge else value
        return type(self).model_validate(values)

    def public_dict(self) -> dict[str, Any]:
        """Settings with secrets masked, safe to log or store next to artifacts."""
        return self.model_dump(mode="json")


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build and validate the settings; raise ConfigError naming each bad setting."""
    path = Path(config_file) if config_file is not None else None
    if path is None and os.environ.get("GENREC_CONFIG"):
        path = Path(os.environ["GENREC_CONFIG"])
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    clean = {key: value for key, value in overrides.items() if value is not None}
    moved_env = sorted(old for old in MOVED_SETTINGS if f"GENREC_{old.upper()}" in os.environ)
    if moved_env:
        raise ConfigError(
            "invalid settings:\n  "
            + "\n  ".join(
                f"environment variable GENREC_{old.upper()}: " + _moved_setting_message(old) for old in moved_env
            )
        )
    token = _CONFIG_FILE.set(path)
    try:
        return Settings(**clean)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"setting '{name}': {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None
    finally:
        _CONFIG_FILE.reset(token)


def configured_values(*names: str) -> dict[str, Any]:
    """The current values of settings (env, TOML, defaults; ``section.field`` for a section's): the DAG's
    param defaults, so a run's params repeat the operator's configuration unless changed in the Trigger form."""
    settings = load_settings()
    values = {}
    for name in names:
        value: Any = settings
        for part in name.split("."):
            value = getattr(value, part)
        values[name] = value
    return values
