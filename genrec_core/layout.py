"""Every path under ``output_uri``, in one place: what each stage writes for run date D.

```
extract/dt=D/                  the extract (daily/, vocab/, quarantine/, stats.json)
models/<model>/dt=D/           a trained model's artifact
scored/dt=D/                   the scorer's part files, before publishing
tables/recommendations/        the published lists: a Delta table partitioned by run_date (publish/lake.py),
tables/publications/, serving/ beside it with one row per published date and the served date
recommendations/dt=D/          0.4's published lists (+ _manifest.json), until retention removes them
runs/dt=D/summary.json         the run summary
```
"""

from __future__ import annotations

import datetime as dt

from genrec_core.contract import partition_name
from genrec_core.storage import join

EXTRACT, MODELS, SCORED, RECOMMENDATIONS, RUNS = "extract", "models", "scored", "recommendations", "runs"
SUMMARY_FILE = "summary.json"


def extract_root(output_uri: str) -> str:
    return join(output_uri, EXTRACT)


def extract_uri(output_uri: str, run_date: dt.date) -> str:
    return join(output_uri, EXTRACT, partition_name(run_date))


def models_root(output_uri: str, model: str | None = None) -> str:
    return join(output_uri, MODELS, model) if model else join(output_uri, MODELS)


def model_uri(output_uri: str, model: str, run_date: dt.date) -> str:
    return join(output_uri, MODELS, model, partition_name(run_date))


def scored_uri(output_uri: str, run_date: dt.date) -> str:
    return join(output_uri, SCORED, partition_name(run_date))


def recommendations_root(output_uri: str) -> str:
    return join(output_uri, RECOMMENDATIONS)


def recommendations_uri(output_uri: str, run_date: dt.date | str) -> str:
    day = partition_name(run_date) if isinstance(run_date, dt.date) else f"dt={run_date}"
    return join(output_uri, RECOMMENDATIONS, day)


def summary_uri(output_uri: str, run_date: dt.date) -> str:
    return join(output_uri, RUNS, partition_name(run_date), SUMMARY_FILE)


def run_date_of_uri(uri: str) -> str:
    """The ``YYYY-MM-DD`` of a dated artifact URI (``.../dt=YYYY-MM-DD``)."""
    return uri.rstrip("/").rsplit("dt=", 1)[-1]
