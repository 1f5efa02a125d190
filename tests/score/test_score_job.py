"""The score stage on a real extract (Spark) and a trained Mult-VAE."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from pydantic import SecretStr

from genrec_core import pipeline
from genrec_core.data.interactions import ExtractedData
from genrec_core.errors import DataError
from genrec_core.handoffs import Evaluated, Extracted, RunRecord, Scored, Trained
from genrec_core.models.registry import load_model
from genrec_core.score.filters import ItemFilter, load_item_filter
from genrec_core.score.job import ScoreRequest, score_shard, shard_dir, staged_parts
from genrec_core.storage import Storage, join
from tests.support import RUN_DATE, make_settings, query

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tiny_log_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("score-job")
    settings = make_settings(tiny_log_dir.as_uri(), out.as_uri(), score={"min_history": 4})
    extracted = pipeline.extract(settings, RUN_DATE)
    model = pipeline.train(settings, RUN_DATE, extracted)
    return settings, extracted.extract_uri, model.model_uri


def run_score(settings, extract_uri, model_uri, out_uri, chunk=64, shards=1, item_filter=ItemFilter(), block=100_000):

    storage = Storage()
    data = ExtractedData(extract_uri, RUN_DATE, storage)
    model = load_model(model_uri, storage)
    markers = [
        score_shard(
            data,
            model,
            ScoreRequest(
                run_date=RUN_DATE,
                k=settings.k,
                chunk_size=chunk,
                min_history=settings.score.min_history,
                fallback_days=settings.score.fallback_days,
                shard=s,
                n_shards=shards,
                block_users=block,
            ),
            item_filter,
            out_uri,
            storage,
            "mult_vae",
        )
        for s in range(shards)
    ]
    parts = staged_parts(storage, out_uri, shards)
    table = pa.concat_tables([storage.read_table(p) for p in parts]).to_pandas()
    return table.sort_values(["user_id", "rank"]).reset_index(drop=True), markers, parts


def test_every_user_gets_k_distinct_unseen_eligible_items_and_fallback_is_flagged(trained, tmp_path):
    settings, extract_uri, model_uri = trained
    data = ExtractedData(extract_uri, RUN_DATE, Storage())
    full_items = data.vocabularies()[1]
    excluded = frozenset(full_items.ids[:5].tolist())  # the five oldest items are "out of stock"
    recs, markers, _ = run_score(
        settings, extract_uri, model_uri, (tmp_path / "s").as_uri(), item_filter=ItemFilter(excluded=excluded)
    )
    seen = data.seen()
    users_with_history = set(seen.users.ids[seen.users_with_history()])
    assert set(recs.user_id) == users_with_history
    per_user = recs.groupby("user_id")
    assert (per_user.size() == settings.k).all() and (per_user.item_id.nunique() == settings.k).all()
    assert not set(recs.item_id) & excluded
    seen_pairs = {(seen.users.ids[u], seen.items.ids[i]) for u, i in zip(*seen.matrix.nonzero())}
    assert not set(zip(recs.user_id, recs.item_id)) & seen_pairs

    counts = data.user_event_counts()
    few = {seen.users.ids[u] for u in seen.users_with_history() if counts[u] < settings.score.min_history}
    assert few, "the tiny log should have users below min_history"
    sources = recs.groupby("user_id").source.agg(set)
    assert all(sources[u] == {"fallback"} for u in few)
    assert all(sources[u] == {"model"} for u in users_with_history - few)
    assert markers[0]["fallback_users"] == len(few) and markers[0]["rows"] == len(recs)


def test_same_lists_for_any_chunk_size_or_shard_count_and_byte_identical_reruns(trained, tmp_path):
    settings, extract_uri, model_uri = trained
    base, _, parts = run_score(settings, extract_uri, model_uri, (tmp_path / "a").as_uri(), chunk=64)
    for chunk, shards, block in ((7, 1, 100_000), (1000, 3, 100_000), (13, 4, 100_000), (16, 1, 37), (64, 2, 5)):
        other, markers, _ = run_score(
            settings, extract_uri, model_uri, (tmp_path / f"b{chunk}-{block}").as_uri(), chunk, shards, block=block
        )
        assert len(markers) == shards and all(m["users"] > 0 for m in markers)
        pd.testing.assert_frame_equal(base.drop(columns="score"), other.drop(columns="score"))
        assert (base.score - other.score).abs().max() <= 1e-5

    _, _, again = run_score(settings, extract_uri, model_uri, (tmp_path / "a").as_uri(), chunk=64)
    storage = Storage()
    assert [storage.read_bytes(p) for p in parts] == [storage.read_bytes(p) for p in again]


def test_publishing_refuses_a_partial_set_of_shards(trained, tmp_path):
    settings, extract_uri, model_uri = trained
    out = (tmp_path / "p").as_uri()
    run_score(settings, extract_uri, model_uri, out, shards=3)
    Storage().delete_file(join(shard_dir(out, 3), "_done", "shard-1.json"))
    with pytest.raises(DataError, match="shard 1 of 3 has not finished"):
        staged_parts(Storage(), out, 3)
    Storage().delete_file(join(shard_dir(out, 3), "shard-2", "part-00000.parquet"))
    with pytest.raises(DataError, match="shard"):
        staged_parts(Storage(), out, 3)


def test_filters_come_from_parquet_and_postgres(pg_dsn, tmp_path):
    from genrec_core.publish.migrations import upgrade

    storage = Storage()
    storage.write_table((tmp_path / "ex.parquet").as_uri(), pa.table({"item_id": ["a", "b"]}))
    storage.write_table((tmp_path / "allow.parquet").as_uri(), pa.table({"item_id": ["a", "c", "d"]}))
    upgrade(pg_dsn)
    import psycopg2

    conn = psycopg2.connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO genrec.item_exclusions (item_id, reason) VALUES ('d', 'out of stock')")
    conn.close()
    f = load_item_filter(storage, (tmp_path / "ex.parquet").as_uri(), (tmp_path / "allow.parquet").as_uri(), pg_dsn)
    assert f.excluded == {"a", "b", "d"} and f.allowed == {"a", "c", "d"}
    import numpy as np

    from genrec_core.data.interactions import Vocabulary

    assert f.eligible(Vocabulary(np.array(["a", "b", "c", "d", "e"], dtype=object))).tolist() == [
        False,
        False,
        True,
        False,
        False,
    ]
    assert load_item_filter(storage, None, None, pg_dsn).allowed is None  # an empty table is no allow-list
    with pytest.raises(DataError, match="no item_id column"):
        storage.write_table((tmp_path / "bad.parquet").as_uri(), pa.table({"sku": ["a"]}))
        load_item_filter(storage, (tmp_path / "bad.parquet").as_uri(), None, None)


def test_excluded_items_from_postgres_never_reach_the_published_lists(trained, pg_dsn):
    settings, extract_uri, model_uri = trained
    from genrec_core.publish.migrations import upgrade

    upgrade(pg_dsn)
    items = ExtractedData(extract_uri, RUN_DATE, Storage()).vocabularies()[1].ids[:10].tolist()
    import psycopg2

    conn = psycopg2.connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO genrec.item_exclusions (item_id) VALUES (%s)", [(i,) for i in items])
    conn.close()
    with_pg = settings.updated(pg_dsn=SecretStr(pg_dsn), score={"shards": 2})
    extracted = Extracted(extract_uri, {})
    trained = Trained(model_uri, "mult_vae", "retrain", "test")
    shards = [pipeline.score(with_pg, RUN_DATE, extracted, trained, shard) for shard in (0, 1)]
    evaluated = Evaluated({}, {})
    record = RunRecord.start(RUN_DATE, extracted, trained, evaluated).but(scored=Scored.combine(shards))
    pipeline.publish_postgres(with_pg, RUN_DATE, record)
    rows = query(
        pg_dsn,
        "SELECT count(*) FILTER (WHERE item_id = ANY(%s)), count(DISTINCT source), count(*) "
        "FROM genrec.recommendations_latest",
        items,
    )
    assert rows[0][0] == 0 and rows[0][1] == 2 and rows[0][2] > 0


def test_spark_mapinpandas_scoring_writes_the_same_lists(trained, tmp_path):
    from genrec_core.extract.spark import get_spark
    from genrec_core.score.spark import score_with_spark
    from genrec_core.storage import S3Options

    settings, extract_uri, model_uri = trained
    base, _, _ = run_score(settings, extract_uri, model_uri, (tmp_path / "local").as_uri(), chunk=64)
    out = (tmp_path / "spark").as_uri()
    request = ScoreRequest(
        run_date=RUN_DATE,
        k=settings.k,
        chunk_size=64,
        min_history=settings.score.min_history,
        fallback_days=settings.score.fallback_days,
        n_shards=3,
    )
    markers = score_with_spark(
        get_spark("local[2]", "1g"), request, extract_uri, model_uri, out, ItemFilter(), S3Options(), "mult_vae"
    )
    assert [m["shard"] for m in markers] == [0, 1, 2]
    storage = Storage()
    spark_lists = pa.concat_tables([storage.read_table(p) for p in staged_parts(storage, out, 3)]).to_pandas()
    spark_lists = spark_lists.sort_values(["user_id", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(base.drop(columns="score"), spark_lists.drop(columns="score"))
    assert sum(m["rows"] for m in markers) == len(base)


def _score_in_child(
    extract_uri: str, model_uri: str, out_uri: str, k: int, min_history: int, fallback_days: int
) -> None:

    storage = Storage()
    score_shard(
        ExtractedData(extract_uri, RUN_DATE, storage),
        load_model(model_uri, storage),
        ScoreRequest(
            run_date=RUN_DATE, k=k, chunk_size=8, min_history=min_history, fallback_days=fallback_days, block_users=10
        ),
        ItemFilter(),
        out_uri,
        storage,
        "mult_vae",
    )


@pytest.mark.reliability
def test_scoring_killed_mid_way_is_refused_then_the_retry_writes_every_list_once(trained, tmp_path):
    import multiprocessing as mp
    import os
    import signal
    import time

    settings, extract_uri, model_uri = trained
    out = (tmp_path / "killed").as_uri()
    shard = tmp_path / "killed" / shard_dir("", 1).strip("/")
    child = mp.get_context("spawn").Process(
        target=_score_in_child,
        args=(extract_uri, model_uri, out, settings.k, settings.score.min_history, settings.score.fallback_days),
    )
    child.start()
    deadline = time.monotonic() + 120
    while not list(shard.rglob("part-*.parquet")):  # kill it once it has started writing its lists
        assert child.is_alive() and time.monotonic() < deadline, "scoring never wrote a part"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert not list(shard.rglob("_done/*.json")), "the shard finished before it could be killed"
    with pytest.raises(DataError, match="shard 0 of 1 has not finished"):
        staged_parts(Storage(), out, 1)  # a publish refuses the half-written shard

    retried, _, _ = run_score(settings, extract_uri, model_uri, out, chunk=8, block=10)  # the retry, same place
    clean, _, _ = run_score(settings, extract_uri, model_uri, (tmp_path / "clean").as_uri(), chunk=8, block=10)
    pd.testing.assert_frame_equal(retried, clean)
    assert not retried.duplicated(["user_id", "rank"]).any()


def test_an_item_based_model_scores_each_user_by_its_own_index_in_every_block(trained, tmp_path):
    """Item-based CFGAN scores a user by its vocabulary index: blocks and shards of users must pass the right
    indices, so every layout gives the lists the model gives each user alone."""
    import numpy as np

    from genrec_core.models.base import FitOptions
    from genrec_core.models.cfgan import CFGANConfig
    from genrec_core.models.cfgan.model import CFGAN
    from genrec_core.ranking.topk import deterministic_top_k

    settings, extract_uri, _ = trained
    storage = Storage()
    data = ExtractedData(extract_uri, RUN_DATE, storage)
    train = data.split()[0]
    config = CFGANConfig(mode="item", generator_hidden=16, discriminator_hidden=8, epochs=3, linear_expert=False)
    model_uri = (tmp_path / "cfgan").as_uri()
    CFGAN(config).fit(train, FitOptions(seed=1)).save(model_uri, storage)
    whole, _, _ = run_score(settings, extract_uri, model_uri, (tmp_path / "whole").as_uri())
    for chunk, shards, block in ((7, 2, 5), (16, 3, 37)):
        other, _, _ = run_score(
            settings, extract_uri, model_uri, (tmp_path / f"s{block}").as_uri(), chunk, shards, block=block
        )
        pd.testing.assert_frame_equal(whole.drop(columns="score"), other.drop(columns="score"))

    model, seen = load_model(model_uri, storage), data.seen()
    history, _ = data.user_block(0, len(seen.users))
    lists = whole[whole.source == "model"]
    for user in lists.user_id.unique()[:5]:
        u = int(seen.users.index_of([user])[0])
        scores = model.score(history[u : u + 1], np.array([u]))
        scores[0, seen.matrix[u].indices] = float("-inf")
        top = deterministic_top_k(scores, settings.k)[0][0].tolist()
        assert lists[lists.user_id == user].item_id.tolist() == [seen.items.ids[i] for i in top]
