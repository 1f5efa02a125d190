"""`genrec` command line: thin commands over the pipeline and services."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genrec_core.errors import ConfigError, GenrecError


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (expected YYYY-MM-DD)") from None


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return number


@contextmanager
def postgres_dsn(configured: str | None) -> Iterator[str]:
    """The configured DSN, or an embedded local server (data kept under .state/postgres) for this command."""
    if configured:
        yield configured
        return
    from genrec_core.dev.paths import state_dir
    from genrec_core.dev.services.local_postgres import LocalPostgres

    server = LocalPostgres(base_dir=state_dir() / "postgres")
    server.start()
    try:
        yield server.dsn
    finally:
        server.stop(remove=False)


@contextmanager
def settings_dsn(config: str | None, migrate: bool = False) -> Iterator[str]:
    """The DSN the settings name (or an embedded server), with migrations applied when asked."""
    from genrec_core.config import load_settings

    settings = load_settings(config)
    with postgres_dsn(settings.pg_dsn.get_secret_value() if settings.pg_dsn else None) as dsn:
        if migrate:
            from genrec_core.publish.migrations import upgrade

            upgrade(dsn)
        yield dsn


def cmd_generate_logs(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.dev.generate import LogSpec, generate_logs

    spec = LogSpec(users=args.users, items=args.items, days=args.days, end_date=args.end_date, seed=args.seed)
    return {"out": args.out, **generate_logs(spec, args.out)}


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.config import load_settings
    from genrec_core.pipeline import run_nightly

    settings = load_settings(
        args.config, events_uri=args.events_uri, output_uri=args.output_uri, model=args.model, k=args.k
    )
    configured = settings.pg_dsn.get_secret_value() if settings.pg_dsn else None
    with postgres_dsn(configured) as dsn:
        return run_nightly(settings.model_copy(update={"pg_dsn": _secret(dsn)}), args.date)


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def cmd_recs(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.publish.postgres import read_user_recommendations

    with settings_dsn(args.config) as dsn:
        rows = read_user_recommendations(dsn, args.user, args.date)
    return {"user_id": args.user, "recommendations": rows}


def cmd_db_upgrade(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.publish.migrations import upgrade

    with settings_dsn(args.config) as dsn:
        return {"applied": upgrade(dsn)}


def _lake(config: str | None) -> Any:
    """The object store's tables, or None before their first publish."""
    from genrec_core.config import load_settings
    from genrec_core.publish.lake import PUBLICATIONS, Lake
    from genrec_core.storage import Storage

    settings = load_settings(config)
    lake = Lake(Storage.from_settings(settings), settings.output_uri)
    return lake if lake.exists(PUBLICATIONS) else None


def cmd_publish_rollback(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.publish.postgres import rollback_to

    with settings_dsn(args.config, migrate=True) as dsn:
        previous = rollback_to(dsn, args.to, args.reason)
    lake = _lake(args.config)
    previous_in_tables = lake.serve(args.to) if lake is not None else None
    return {"serving": args.to, "previously_serving": previous, "previously_serving_in_tables": previous_in_tables}


def cmd_publish_drop(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.publish.postgres import drop_date

    with settings_dsn(args.config, migrate=True) as dsn:
        served = drop_date(dsn, args.date, args.reason)
    lake = _lake(args.config)
    served_in_tables = lake.drop(args.date) if lake is not None and args.date in lake.publications() else None
    return {"dropped": args.date, "serving": served, "serving_in_tables": served_in_tables}


def cmd_publish_migrate(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.config import load_settings
    from genrec_core.publish.object_store import migrate_manifests
    from genrec_core.storage import Storage

    settings = load_settings(args.config)
    moved = migrate_manifests(Storage.from_settings(settings), settings.output_uri)
    return {"migrated": [d.isoformat() for d in moved]}


def cmd_bench_publish(args: argparse.Namespace) -> dict[str, Any]:
    import os

    from genrec_core.dev.benchmarks import publish_bench

    if args.target == "object-store":
        from genrec_core.dev.benchmarks import table_bench

        return table_bench.run(args.rows, endpoint=args.s3_endpoint)
    configured = os.environ.get("GENREC_PG_DSN")
    if configured:
        return publish_bench.run(configured, args.rows, readers=args.readers, workers=args.workers)
    from genrec_core.dev.services.local_postgres import LocalPostgres

    with LocalPostgres() as server:  # a fresh embedded server, removed afterwards
        return {
            **publish_bench.run(server.dsn, args.rows, readers=args.readers, workers=args.workers),
            "server": "embedded local PostgreSQL",
        }


def cmd_bench_scoring(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.dev.benchmarks import scoring_bench

    return scoring_bench.run(args.users, args.items, k=args.k, chunk=args.chunk_size, threads=args.threads)


def cmd_bench_extract(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.dev.benchmarks import extract_bench

    return extract_bench.run(
        args.users, args.items, days=args.days, driver_memory=args.driver_memory, master=args.master
    )


def cmd_bench_quality(args: argparse.Namespace) -> list[dict[str, Any]]:
    from genrec_core.dev.benchmarks import quality_bench

    try:
        overrides = json.loads(args.overrides) if args.overrides else None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--overrides is not JSON: {exc}") from None
    results = quality_bench.run(
        args.dataset,
        args.models.split(",") if args.models else list(quality_bench.bench_models(args.dataset)),
        args.threads,
        overrides,
        args.tune,
        args.checkpoints,
    )
    return results  # printed one object per model, one per line


def cmd_bench_nightly(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.dev.benchmarks import nightly_bench

    try:
        overrides = json.loads(args.settings) if args.settings else None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--settings is not JSON: {exc}") from None
    return nightly_bench.run(
        args.users,
        args.items,
        args.events,
        days=args.days,
        nights=args.nights,
        k=args.k,
        seed=args.seed,
        workdir=args.workdir,
        overrides=overrides,
        log=args.log,
    )


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(part) for part in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated item counts, got {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"item counts must be >= 1, got {value!r}")
    return sizes


def cmd_bench_scale(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.dev.benchmarks import scale_bench

    try:
        settings = json.loads(args.settings) if args.settings else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--settings is not JSON: {exc}") from None
    plan = scale_bench.ScalePlan(
        args.users,
        args.events_per_user,
        args.threads,
        args.epochs,
        args.patience,
        frozenset(args.models.split(",")) if args.models else None,
        settings,
    )
    return scale_bench.run(args.items, plan)


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.dev.demo import run_demo

    return run_demo(args.date)


def cmd_bench_report(args: argparse.Namespace) -> dict[str, Any]:
    from genrec_core.dev.benchmarks import report

    return report.run()


def _count(n: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % (size // 10) == 0:
            return f"{n / size:g}{suffix}"
    return str(n)


# quality_bench.DATASETS, spelt out so that parsing the command line imports no numpy (a test keeps them equal)
QUALITY_DATASETS = ("ml-1m", "ml-100k", "lastfm", "ml-1m-sasrec", "beauty", "sports", "toys")
BENCH_CASES = {
    "publish": lambda a: f"{_count(a.rows)}-rows" + ("-object-store" if a.target == "object-store" else ""),
    "scoring": lambda a: f"{_count(a.users)}-users-{_count(a.items)}-items",
    "extract": lambda a: f"{_count(a.users)}-users-{_count(a.items)}-items-{a.days}d",
    "quality": lambda a: a.dataset if not a.models else f"{a.dataset}-{a.models.replace(',', '_')}",
    "scale": lambda a: (
        f"{_count(a.users)}-users-"
        + "-".join(_count(n) for n in a.items)
        + "-items"
        + (f"-{a.models.replace(',', '_').replace('/', '-')}" if a.models else "")
        + _settings_suffix(a.settings)
    ),
    "nightly": lambda a: (
        f"{_count(a.users)}-users-{_count(a.items)}-items"
        + ("-sequences" if a.log == "sequences" else "")
        + ("-custom" if a.settings else "")
    ),
}


def _settings_suffix(settings: str | None) -> str:
    """`-model.key-value` for each override of `bench scale --settings` (one file per setting tried)."""
    if not settings:
        return ""
    try:
        parsed = json.loads(settings)
        return "".join(f"-{model}.{key}-{value}" for model, fields in parsed.items() for key, value in fields.items())
    except (json.JSONDecodeError, AttributeError):
        return "-custom"


def _save_bench(args: argparse.Namespace, measured: dict[str, Any], result: Any) -> None:
    from genrec_core.dev.benchmarks import record

    path = record.save(args.bench_command, BENCH_CASES[args.bench_command](args), result, measured=measured)
    print(f"genrec: saved {path}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genrec", description="Nightly batch recommender")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate-logs", help="write a synthetic raw log in the contract")
    p.add_argument("--out", required=True, help="events URI (file://, s3:// or absolute path)")
    p.add_argument("--users", type=_positive, default=2000)
    p.add_argument("--items", type=_positive, default=500)
    p.add_argument("--days", type=_positive, default=14)
    p.add_argument("--end-date", type=_date, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_generate_logs)

    p = sub.add_parser("run", help="the whole nightly run for one date, in-process")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--events-uri")
    p.add_argument("--output-uri")
    p.add_argument("--model")
    p.add_argument("--k", type=_positive)
    p.add_argument("--config", help="settings TOML file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("recs", help="a user's list from Postgres")
    p.add_argument("--user", required=True)
    p.add_argument("--date", type=_date, help="run date (default: the latest published)")
    p.add_argument("--config")
    p.set_defaults(func=cmd_recs)

    p = sub.add_parser("db", help="database administration")
    db = p.add_subparsers(dest="db_command", required=True)
    up = db.add_parser("upgrade", help="apply pending migrations from sql/")
    up.add_argument("--config")
    up.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("publish", help="operate on published dates (Postgres and the object store's tables)")
    pub = p.add_subparsers(dest="publish_command", required=True)
    rb = pub.add_parser("rollback", help="serve an earlier kept date from genrec.recommendations_latest")
    rb.add_argument("--to", type=_date, required=True)
    rb.add_argument("--reason", default="")
    rb.add_argument("--config")
    rb.set_defaults(func=cmd_publish_rollback)
    dr = pub.add_parser("drop", help="remove a bad date's partition (serving moves to the newest remaining)")
    dr.add_argument("date", type=_date)
    dr.add_argument("--reason", default="")
    dr.add_argument("--config")
    dr.set_defaults(func=cmd_publish_drop)
    mg = pub.add_parser("migrate", help="copy 0.4's manifested dates (recommendations/dt=D/) into the Delta tables")
    mg.add_argument("--config")
    mg.set_defaults(func=cmd_publish_migrate)

    p = sub.add_parser("bench", help="benchmarks (print one JSON object)")
    bench = p.add_subparsers(dest="bench_command", required=True)
    bp = bench.add_parser(
        "publish",
        help="Postgres publish vs raw COPY floor and pandas.to_sql; or (--target object-store) the Delta table "
        "publish vs plain Parquet parts, and DuckDB reads of both layouts",
    )
    bp.add_argument("--target", choices=("postgres", "object-store"), default="postgres")
    bp.add_argument("--s3-endpoint", help="object-store target: an S3 endpoint (default: a moto server started here)")
    bp.add_argument("--rows", type=_positive, default=10_000_000)
    bp.add_argument("--readers", type=_positive, default=4)
    bp.add_argument("--workers", type=_positive, default=2, help="parallel COPY connections")
    bp.add_argument("--save", action="store_true", help="also write bench/results/<bench>-<case>.json")
    bp.set_defaults(func=cmd_bench_publish)
    bs = bench.add_parser("scoring", help="score stage users/s vs a bare matmul + topk floor")
    bs.add_argument("--users", type=_positive, default=200_000)
    bs.add_argument("--items", type=_positive, default=20_000)
    bs.add_argument("--k", type=_positive, default=10)
    bs.add_argument("--chunk-size", type=int, default=0, help="users per chunk; 0: a 256 MB score matrix")
    bs.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    bs.add_argument("--save", action="store_true", help="also write bench/results/<bench>-<case>.json")
    bs.set_defaults(func=cmd_bench_scoring)
    be = bench.add_parser("extract", help="Spark extract events/s (full and incremental) vs a bare read + groupBy")
    be.add_argument("--users", type=_positive, default=1_000_000)
    be.add_argument("--items", type=_positive, default=100_000)
    be.add_argument("--days", type=_positive, default=30)
    be.add_argument("--driver-memory", default="6g", help="JVM heap of the local-mode driver")
    be.add_argument("--master", default="local[2]")
    be.add_argument("--save", action="store_true", help="also write bench/results/<bench>-<case>.json")
    be.set_defaults(func=cmd_bench_extract)
    bq = bench.add_parser("quality", help="test metrics of every model on a public data set's fixed split")
    bq.add_argument("--dataset", required=True, choices=QUALITY_DATASETS)
    bq.add_argument(
        "--models",
        help="comma-separated (default: every registered model, and <model>+ease where the model has a linear expert)",
    )
    bq.add_argument("--threads", type=_positive, default=2)
    bq.add_argument("--overrides", help='JSON config overrides per neural model, e.g. {"mult_vae": {"dropout": 0.3}}')
    bq.add_argument(
        "--tune",
        type=int,
        default=0,
        metavar="TRIALS",
        help="search each model's settings with this many Optuna trials on validation (0: off)",
    )
    bq.add_argument(
        "--checkpoints",
        metavar="DIR",
        help="the neural models checkpoint every epoch under DIR/<dataset>-<model>; a killed run resumes there",
    )
    bq.add_argument("--save", action="store_true", help="also write bench/results/<bench>-<case>.json")
    bq.set_defaults(func=cmd_bench_quality)

    bc = bench.add_parser(
        "scale", help="cost and quality of every model against catalogue size, on planted logs (issue #22)"
    )
    bc.add_argument(
        "--items", type=_sizes, default=[10_000, 100_000, 1_000_000], help="catalogue sizes, comma-separated"
    )
    bc.add_argument("--users", type=_positive, default=10_000)
    bc.add_argument("--events-per-user", type=_positive, default=40)
    bc.add_argument("--threads", type=_positive, default=2)
    bc.add_argument("--epochs", type=_positive, default=30, help="the neural models' epoch cap")
    bc.add_argument("--patience", type=_positive, default=5, help="epochs without a better validation NDCG@20")
    bc.add_argument("--models", help="comma-separated row labels (default: all), e.g. mult_vae/full,mult_vae/sampled")
    bc.add_argument("--settings", help='JSON config overrides by model name, e.g. {"sansa": {"weights_per_item": 50}}')
    bc.add_argument("--save", action="store_true", help="also write bench/results/<bench>-<case>.json")
    bc.set_defaults(func=cmd_bench_scale)

    bn = bench.add_parser(
        "nightly", help="the default nightly path on a planted log: published lists against the best achievable"
    )
    bn.add_argument("--users", type=_positive, default=6000)
    bn.add_argument("--items", type=_positive, default=2000)
    bn.add_argument("--events", type=_positive, default=320_000, help="events over the days of the window")
    bn.add_argument("--days", type=_positive, default=30)
    bn.add_argument("--nights", type=_positive, default=2, help="the first retrains; the next fine-tune or refit")
    bn.add_argument("--k", type=_positive, default=20)
    bn.add_argument("--seed", type=int, default=0)
    bn.add_argument("--workdir", type=Path, help="keep the log, outputs and Postgres here (default: a temp dir)")
    bn.add_argument("--settings", help='JSON settings instead of the defaults, e.g. {"model": "ease"}')
    bn.add_argument(
        "--log",
        choices=("topics", "sequences"),
        default="topics",
        help="the planted log: a topic mixture, or a first-order chain over items (order carries the signal)",
    )
    bn.add_argument("--save", action="store_true", help="also write bench/results/<bench>-<case>.json")
    bn.set_defaults(func=cmd_bench_nightly)

    br = bench.add_parser("report", help="rebuild bench/README.md's tables and docs/ plots from bench/results/")
    br.set_defaults(func=cmd_bench_report)

    p = sub.add_parser("demo", help="generate a log, run the DAG with `airflow dags test`, show results")
    p.add_argument("--date", type=_date, default=dt.date(2026, 11, 20))
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    measured = None
    if getattr(args, "save", False):  # the commit and tree being measured: as they are when the run starts
        from genrec_core.dev.benchmarks.record import provenance

        measured = provenance(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = args.func(args)
    except GenrecError as exc:
        print(f"genrec: error: {exc}", file=sys.stderr)
        return 2
    if measured is not None:
        _save_bench(args, measured, result)
    for line in result if isinstance(result, list) else [result]:
        print(json.dumps(line, default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
