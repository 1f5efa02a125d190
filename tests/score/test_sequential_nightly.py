"""A sequential model through the nightly path (real Spark, Postgres, files): SASRec trained on D-1, fine-tuned
on D from D-1's artifact, scored from each user's time-ordered history (in-process and with Spark), and a
backfill of D that reproduces the night."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
import torch
from pydantic import SecretStr

from genrec_core import pipeline
from genrec_core.data.interactions import ExtractedData
from genrec_core.dev.planted import write_day
from genrec_core.dev.planted_sequences import SequenceSpec, plant_sequences
from genrec_core.errors import GateRejected
from genrec_core.models.registry import load_model
from genrec_core.score.filters import ItemFilter
from genrec_core.score.job import ScoreRequest, staged_parts
from genrec_core.storage import Storage, join
from tests.support import (
    FAST_SASREC,
    RUN_DATE,
    assert_lists_are_complete_and_unseen,
    fetch,
    make_settings,
    seen_pairs,
)

pytestmark = pytest.mark.integration

DAYS = 6


@pytest.fixture(scope="module")
def sequence_log(tmp_path_factory):
    events = tmp_path_factory.mktemp("sequence-log") / "events"
    spec = SequenceSpec(users=150, items=150, days=DAYS, end_date=RUN_DATE, events=2000, seed=4)
    log = plant_sequences(spec)
    for day in log.days:
        write_day(log, day, events.as_uri())
    return events


def _settings(events, out, dsn, compare_baselines=False, **sasrec):
    """Settings for SASRec on the log; the gate against the baselines only when asked (on a pure first-order
    chain the transitions baseline is the optimal estimator, which a few epochs on 150 users do not reach)."""
    settings = make_settings(
        events.as_uri(),
        out.as_uri(),
        model="sasrec",
        sasrec={**FAST_SASREC, "learning_rate": 3e-3, **sasrec},
        lookback_days=DAYS,
        score={"min_history": 1},
        gate={"compare_baselines": compare_baselines},
    )
    return settings.model_copy(update={"pg_dsn": SecretStr(dsn)})


def _lists(dsn, day):
    recs = fetch(dsn, "SELECT user_id, rank, item_id FROM genrec.recommendations WHERE run_date = %s", day)
    return recs.sort_values(["user_id", "rank"]).reset_index(drop=True)


def test_sasrec_trains_fine_tunes_scores_in_order_and_a_backfill_reproduces_the_night(sequence_log, tmp_path, pg_dsn):
    settings = _settings(sequence_log, tmp_path / "out", pg_dsn)
    previous = RUN_DATE - dt.timedelta(days=1)
    first = pipeline.run_nightly(settings, previous)
    night = pipeline.run_nightly(settings, RUN_DATE)
    assert first["training"]["mode"] == "retrain" and night["training"]["mode"] == "finetune"
    assert night["model"] == "sasrec"
    lists = _lists(pg_dsn, RUN_DATE)
    recs = fetch(pg_dsn, "SELECT * FROM genrec.recommendations WHERE run_date = %s", RUN_DATE)
    assert_lists_are_complete_and_unseen(recs, seen_pairs(Storage(), settings.events_uri, RUN_DATE, DAYS), settings.k)
    assert set(recs.source) == {"model"}  # every user has a history of its own (min_history 1)

    # the lists come from each user's latest items: the model's scores of the ordered history, masked
    storage = Storage()
    extracted = pipeline.extract_result(settings, RUN_DATE)
    data = ExtractedData(extracted.extract_uri, RUN_DATE, storage)
    model = load_model(join(settings.output_uri, "models", "sasrec", f"dt={RUN_DATE}"), storage)
    history, seen = data.user_block(0, 20, ordered=True)
    assert (history.data >= 1).all() and history.nnz > 0
    scores = model.score(history)
    scores[torch.from_numpy(seen.toarray() > 0)] = float("-inf")
    top = scores.topk(settings.k, dim=1).indices.numpy()
    users, items = data.vocabularies()
    for row in range(20):
        expected = items.ids[top[row]].tolist()
        assert lists[lists.user_id == users.ids[row]].item_id.tolist() == expected

    # Spark's scoring of the same artifact writes the same lists
    from genrec_core.extract.spark import get_spark
    from genrec_core.score.spark import score_with_spark
    from genrec_core.storage import S3Options

    out = (tmp_path / "spark").as_uri()
    request = ScoreRequest(run_date=RUN_DATE, k=settings.k, chunk_size=16, min_history=1, fallback_days=7, n_shards=2)
    model_uri = join(settings.output_uri, "models", "sasrec", f"dt={RUN_DATE}")
    score_with_spark(
        get_spark("local[2]", "1g"), request, extracted.extract_uri, model_uri, out, ItemFilter(), S3Options(), "sasrec"
    )
    spark_lists = pa.concat_tables([storage.read_table(p) for p in staged_parts(storage, out, 2)]).to_pandas()
    spark_lists = spark_lists.sort_values(["user_id", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(lists, spark_lists[["user_id", "rank", "item_id"]], check_dtype=False)

    # a backfill of D (the same inputs, settings and seed) publishes the same lists again
    again = pipeline.run_nightly(settings, RUN_DATE)
    assert again["training"]["mode"] == "finetune"
    pd.testing.assert_frame_equal(_lists(pg_dsn, RUN_DATE), lists)


def test_the_gate_holds_a_sequential_model_to_the_transitions_baseline(sequence_log, tmp_path, pg_dsn):
    settings = _settings(sequence_log, tmp_path / "out", pg_dsn, compare_baselines=True, epochs=1)
    with pytest.raises(GateRejected, match="strongest baseline transitions"):
        pipeline.run_nightly(settings, RUN_DATE)
    assert fetch(pg_dsn, "SELECT count(*) AS n FROM genrec.recommendations").n[0] == 0
