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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from genrec_core.contract import DEFAULT_EVENT_WEIGHTS, EVENT_TYPES
from genrec_core.errors import ConfigError

ModelName = Literal["mult_vae", "rec_vae", "cfgan", "ease", "item_knn", "popularity"]

# The TOML file of the `load_settings` call in progress (so loading never touches os.environ).
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("genrec_config_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MultVAEConfig(_Section):
    """Mult-VAE (Liang et al. 2018) hyperparameters; defaults follow the paper."""

    hidden_dim: int = Field(600, ge=1)
    latent_dim: int = Field(200, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    beta_cap: float = Field(0.2, ge=0.0)
    total_anneal_steps: int = Field(200_000, ge=1)
    epochs: int = Field(50, ge=1)
    finetune_epochs: int = Field(10, ge=1, description="epochs when warm-started from yesterday's model")
    batch_size: int = Field(500, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    linear_expert: bool = Field(False, description="multiply in an EASE expert: see genrec_core/models/neural.py")
    expert_l2: float | None = Field(None, gt=0.0, description="the expert's L2; None = chosen on validation (else 500)")
    expert_weight: float | None = Field(None, ge=0.0, description="the expert's weight; None = chosen on validation (else 10)")


class RecVAEConfig(_Section):
    """RecVAE (Shenbin et al., WSDM 2020); defaults follow the authors' code."""

    hidden_dim: int = Field(600, ge=1)
    latent_dim: int = Field(200, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    gamma: float = Field(0.005, gt=0.0, description="KL weight per interaction of the user (beta = gamma * |x|)")
    prior_weights: tuple[float, float, float] = Field(
        (0.15, 0.75, 0.1), description="composite prior: standard normal, previous posterior, wide normal")
    encoder_passes: int = Field(3, ge=1, description="encoder passes over the data per epoch")
    decoder_passes: int = Field(1, ge=1, description="decoder passes over the data per epoch")
    epochs: int = Field(50, ge=1)
    finetune_epochs: int = Field(5, ge=1)
    batch_size: int = Field(500, ge=1)
    learning_rate: float = Field(5e-4, gt=0.0)
    linear_expert: bool = Field(False, description="multiply in an EASE expert: see genrec_core/models/neural.py")
    expert_l2: float | None = Field(None, gt=0.0, description="the expert's L2; None = chosen on validation (else 500)")
    expert_weight: float | None = Field(None, ge=0.0, description="the expert's weight; None = chosen on validation (else 10)")

    @field_validator("prior_weights")
    @classmethod
    def _weights_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) < 0 or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError("prior weights must be >= 0 and sum to 1")
        return value


class CFGANConfig(_Section):
    """CFGAN (Chae et al., CIKM 2018), the ZR + PM variant."""

    generator_hidden: int = Field(400, ge=1)
    generator_layers: int = Field(1, ge=1)
    discriminator_hidden: int = Field(125, ge=1)
    discriminator_layers: int = Field(4, ge=1)
    zr_ratio: float = Field(0.4, ge=0.0, le=1.0, description="share of unseen items pushed to zero (ZR)")
    pm_ratio: float = Field(0.4, ge=0.0, le=1.0, description="share of unseen items shown to the discriminator (PM)")
    zr_weight: float = Field(0.03, ge=0.0, description="alpha: weight of the zero-reconstruction term")
    discriminator_steps: int = Field(1, ge=1)
    generator_steps: int = Field(1, ge=1)
    epochs: int = Field(200, ge=1)
    finetune_epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-4, gt=0.0)


class EASEConfig(_Section):
    """EASE (Steck, WWW 2019): closed-form item-item weights with an L2 penalty."""

    l2: float = Field(500.0, gt=0.0)
    max_items: int = Field(30_000, ge=1, description="refuse larger catalogues: the Gram matrix is items^2 floats")


class ItemKNNConfig(_Section):
    """Item-based k-nearest neighbours, cosine similarity with shrinkage."""

    neighbors: int = Field(100, ge=1)
    shrink: float = Field(10.0, ge=0.0)


class TuningConfig(_Section):
    """Optional hyperparameter search before a full retrain (genrec_core/tuning.py): trials train on the
    window's days before D-1 and are judged on D-1, so day D stays unseen for the gate."""

    enabled: bool = Field(False, description="search before each full retrain; fine-tunes keep the tuned config")
    trials: int = Field(20, ge=1, description="most trials per search")
    timeout_minutes: float | None = Field(60.0, gt=0, description="wall-clock budget of one search; None = trials only")
    patience: int = Field(5, ge=1, description="early stopping of a neural trial, in epochs")


class ExtractConfig(_Section):
    """How raw logs become implicit feedback (see the README's extract section)."""

    format: Literal["parquet", "csv", "jsonl"] = Field("parquet", description="file format of the raw partitions")
    incremental: bool = Field(True, description="reuse yesterday's extract and read only day D when possible")
    max_events_per_user_day: int | None = Field(
        5000, ge=1, description="bot guard: a user-day with more events goes to quarantine whole; None = no cap")
    kcore: int = Field(0, ge=0, description="keep only users and items with at least this many positive pairs; 0 = off")
    decay_half_life_days: float | None = Field(
        None, gt=0, description="a day's weight halves every this many days before D; None = no decay")
    count_weight: float = Field(
        0.0, ge=0, description="pair weight = strongest event weight + count_weight * ln(events of the pair)")
    broadcast_vocab_max: int = Field(
        5_000_000, ge=0, description="vocabularies up to this size are broadcast to the executors when indexing")


class GateConfig(_Section):
    """Champion/challenger gate on the held-out day (see genrec_core/gate.py)."""

    metric: Literal["ndcg", "recall", "precision"] = Field("ndcg", description="compared at k")
    margin: float = Field(0.05, ge=0.0, lt=1.0, description="allowed relative drop below the champion")
    min_users: int = Field(10, ge=1, description="fewest users with held-out items for a meaningful comparison")


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
    model: ModelName = "mult_vae"
    k: int = Field(10, ge=1, le=1000)
    lookback_days: int = Field(30, ge=2, le=3650)
    seed: int = 42
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    rating_threshold: float = 4.0
    max_rejected_share: float = Field(0.05, ge=0.0, le=1.0)
    spark_master: str = "local[*]"
    spark_driver_memory: str = "2g"
    score_chunk_size: int = Field(0, ge=0, description="users per scoring chunk; 0 = from score_chunk_budget_mb")
    score_chunk_budget_mb: int = Field(256, ge=1, description="memory of one chunk's score matrix when auto-sized")
    score_block_users: int = Field(100_000, ge=1, description="users whose history is held in memory at once")
    min_history: int = Field(3, ge=1, description="users with fewer accepted events get the fallback list")
    fallback_days: int = Field(7, ge=1, description="popularity window of the fallback list, days through D")
    score_shards: int = Field(1, ge=1, le=1024, description="independent scoring jobs (hash ranges of user ids)")
    score_engine: Literal["local", "spark"] = Field(
        "local", description="local: one process per shard (Airflow maps them); spark: one Spark job, a task per shard")
    exclusions_uri: str | None = Field(None, description="Parquet with an item_id column: never recommend these")
    allowlist_uri: str | None = Field(None, description="Parquet with an item_id column: recommend only these")
    keep_dates: int = Field(30, ge=1, description="published dates kept in Postgres and object storage")
    publish_workers: int = Field(2, ge=1, le=32, description="parallel COPY connections")
    torch_threads: int = Field(0, ge=0, description="0 keeps torch's default")
    train_mode: Literal["auto", "finetune", "retrain"] = Field(
        "auto", description="auto: fine-tune from D-1's model unless a full retrain is due (genrec_core/training_plan.py)")
    retrain_every_days: int = Field(7, ge=1, description="auto mode: full retrain when the last one is this old")
    retrain_vocab_growth: float = Field(
        0.1, ge=0.0, description="auto mode: full retrain when the item vocabulary grew by more than this share")
    checkpoint_dir: str | None = Field(
        None, description="local directory for training checkpoints (resume after a crash); None = system temp dir")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    pg_dsn: SecretStr | None = None
    s3: S3Config = Field(default_factory=S3Config)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    force_publish: bool = Field(False, description="publish even when the quality gate rejects (recorded as forced)")
    mult_vae: MultVAEConfig = Field(default_factory=MultVAEConfig)
    rec_vae: RecVAEConfig = Field(default_factory=RecVAEConfig)
    cfgan: CFGANConfig = Field(default_factory=CFGANConfig)
    ease: EASEConfig = Field(default_factory=EASEConfig)
    item_knn: ItemKNNConfig = Field(default_factory=ItemKNNConfig)

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
    """The current values of top-level settings (env, TOML, defaults): the DAG's param defaults, so a
    run's params repeat the operator's configuration unless someone changes them in the Trigger form."""
    settings = load_settings()
    return {name: getattr(settings, name) for name in names}
