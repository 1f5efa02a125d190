"""The score stage as one Spark job: each task scores one shard with `mapInPandas`.

Every task runs the same `score_shard` as an Airflow-mapped shard, so both paths write
identical part files and markers. The model and the extract's matrices are loaded once
per executor Python worker and reused by every shard that worker runs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from genrec_core.score.filters import ItemFilter
from genrec_core.score.job import ScoreRequest
from genrec_core.storage import S3Options

_CACHE: dict[tuple[str, str], Any] = {}  # per executor worker: (extract_uri, model_uri) -> (data, model)


def _scorer(extract_uri: str, model_uri: str, run_date: dt.date, s3: S3Options, device: str) -> tuple[Any, Any]:
    from genrec_core.data.interactions import ExtractedData
    from genrec_core.models.registry import load_model
    from genrec_core.storage import Storage

    key = (extract_uri, model_uri)
    if key not in _CACHE:
        storage = Storage(s3)
        _CACHE.clear()  # one model per worker at a time
        _CACHE[key] = (ExtractedData(extract_uri, run_date, storage), load_model(model_uri, storage, device))
    return _CACHE[key]


def score_with_spark(
    spark: Any,
    request: ScoreRequest,
    extract_uri: str,
    model_uri: str,
    scored_uri: str,
    item_filter: ItemFilter,
    s3: S3Options,
    model_name: str,
    device: str = "cpu",
) -> list[dict]:
    """Score shards 0..n_shards-1 of `request` as Spark tasks; return their markers."""
    import pandas as pd

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from dataclasses import replace

        from genrec_core.score.job import score_shard
        from genrec_core.storage import Storage

        data, model = _scorer(extract_uri, model_uri, request.run_date, s3, device)
        for batch in batches:
            markers = []
            for shard in batch["shard"].tolist():
                marker = score_shard(
                    data, model, replace(request, shard=int(shard)), item_filter, scored_uri, Storage(s3), model_name
                )
                markers.append(json.dumps(marker))
            yield pd.DataFrame({"marker": markers})

    shards = spark.createDataFrame(pd.DataFrame({"shard": list(range(request.n_shards))}))
    result = shards.repartition(request.n_shards, "shard").mapInPandas(run, "marker string")
    return sorted((json.loads(row["marker"]) for row in result.collect()), key=lambda m: m["shard"])
