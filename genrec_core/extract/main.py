"""spark-submit entry point for the extract.

    spark-submit --master spark://HOST:7077 genrec_core/extract/main.py --run-date 2026-11-20 [--full]

Settings come from the environment (``GENREC_*``) or ``--config FILE.toml``, like the CLI.
The master, executor count and memory are spark-submit's; the job itself uses only the
DataFrame API (no Python UDFs), so executors need Spark and no genrec code. It prints
one JSON line: the extract's URI and its statistics (without the per-day detail).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from genrec_core.config import load_settings
    from genrec_core.errors import GenrecError
    from genrec_core.extract.job import run_extract
    from genrec_core.extract.spark import get_spark
    from genrec_core.storage import Storage

    parser = argparse.ArgumentParser(prog="genrec-extract", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-date", required=True, type=dt.date.fromisoformat, help="the day D, YYYY-MM-DD")
    parser.add_argument("--config", help="TOML settings file")
    parser.add_argument("--full", action="store_true", help="recompute the whole window (no incremental reuse)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        spark = get_spark(master=None)  # the master spark-submit was given
        result = run_extract(settings, args.run_date, Storage.from_settings(settings), spark=spark, full=args.full)
    except GenrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"extract_uri": result.uri, "stats": {k: v for k, v in result.stats.items() if k != "per_day"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
