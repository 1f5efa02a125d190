"""Binary COPY encoding: what the real server stores equals what was sent, for hostile text and edge values."""

from __future__ import annotations

import datetime as dt
import io
import math

import psycopg2
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrec_core.errors import DataError
from genrec_core.publish.binary_copy import SIGNATURE, TRAILER, encode_rows

pytestmark = pytest.mark.integration
KINDS = {"user_id": "text", "rank": "int4", "item_id": "text", "score": "float8", "source": "text"}


@pytest.fixture()
def copy_table(pg_dsn):
    """Load an Arrow table through binary COPY into a fresh table and read it back in load order."""
    conn = psycopg2.connect(pg_dsn)

    def load(table: pa.Table, kinds: dict = KINDS) -> list[tuple]:
        types = {"text": "text", "int4": "integer", "float8": "double precision", "date": "date"}
        with conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS t")
            cur.execute("CREATE TABLE t (n serial, " + ", ".join(f"{c} {types[k]}" for c, k in kinds.items()) + ")")
            cur.copy_expert(
                f"COPY t ({', '.join(kinds)}) FROM STDIN WITH (FORMAT binary)", io.BytesIO(encode_rows(table, kinds))
            )
            cur.execute(f"SELECT {', '.join(kinds)} FROM t ORDER BY n")
            return cur.fetchall()

    yield load
    conn.close()


def _rows(table: pa.Table) -> list[tuple]:
    return [tuple(row.values()) for row in table.select(list(KINDS)).to_pylist()]


def test_hostile_text_and_edge_values_arrive_as_sent(copy_table):
    table = pa.table(
        {
            "user_id": ["u1", "ü漢字🙂", "", "x" * 5000, "a,b", 'q"uote', "line\nbreak\r", "\\N", "NULL", "tab\there"],
            "rank": pa.array([1, 2, 2**31 - 1, 7, 1, 1, 1, 1, 1, 1], pa.int32()),
            "item_id": ["i", "", "\\", "\\.", "i", "i", "i", "i", "i", "i"],
            "score": [0.1, -1e300, math.inf, -math.inf, 5e-324, -0.0, 1 / 3, 0.0, 2.0**53, -1.5],
            "source": ["model", "fallback"] * 5,
        }
    )
    assert copy_table(table) == _rows(table)
    assert copy_table(table.slice(3, 4)) == _rows(table.slice(3, 4))  # a slice starts mid-buffer
    chunked = pa.concat_tables([table.slice(0, 5), table.slice(5)])
    assert copy_table(chunked) == _rows(table)


def test_nan_scores_and_other_input_types_are_converted_safely(copy_table):
    table = pa.table(
        {
            "user_id": pa.array(["a", "b"]).dictionary_encode(),
            "rank": pa.array([1, 2], pa.int64()),
            "item_id": pa.array(["x", "y"], pa.large_string()),
            "score": pa.array([float("nan"), 1.0], pa.float32()),
            "source": ["model", "model"],
        }
    )
    (a, b) = copy_table(table)
    assert a[:3] == ("a", 1, "x") and math.isnan(a[3]) and b == ("b", 2, "y", 1.0, "model")


def test_dates_arrive_as_sent(copy_table):
    days = [
        dt.date(2000, 1, 1),
        dt.date(1999, 12, 31),
        dt.date(2026, 11, 20),
        dt.date(1970, 1, 1),
        dt.date(9999, 12, 31),
    ]
    assert copy_table(pa.table({"run_date": days}), {"run_date": "date"}) == [(d,) for d in days]


def test_an_empty_table_is_a_valid_empty_stream(copy_table):
    empty = pa.table(
        {
            c: pa.array([], pa.string() if k == "text" else pa.int32() if k == "int4" else pa.float64())
            for c, k in KINDS.items()
        }
    )
    assert encode_rows(empty, KINDS) == SIGNATURE + TRAILER
    assert copy_table(empty) == []


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("user_id", ["a", None], "column 'user_id' has 1 null value"),
        ("rank", [1, 2**31], "column 'rank' .* cannot be sent as int4"),
    ],
)
def test_values_the_column_cannot_hold_are_refused_naming_the_column(column, values, message):
    table = pa.table(
        {
            "user_id": ["a", "b"],
            "rank": pa.array([1, 2], pa.int64()),
            "item_id": ["x", "y"],
            "score": [1.0, 2.0],
            "source": ["model", "model"],
        }
    )
    table = table.set_column(table.column_names.index(column), column, pa.array(values))
    with pytest.raises(DataError, match=message):
        encode_rows(table, KINDS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            # lone surrogates (category Cs) are not text: no Arrow string or Parquet part can hold one
            st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=30),
            st.integers(-(2**31), 2**31 - 1),
            st.text(max_size=5).filter(lambda s: "\x00" not in s),
            st.floats(allow_nan=False),
            st.sampled_from(["model", "fallback"]),
        ),
        max_size=25,
    )
)
def test_any_rows_round_trip(copy_table, rows):
    table = pa.table(
        {
            c: pa.array([r[i] for r in rows], pa.int32() if c == "rank" else None)
            if rows
            else pa.array([], pa.int32() if c == "rank" else pa.float64() if c == "score" else pa.string())
            for i, c in enumerate(KINDS)
        }
    )
    assert copy_table(table) == rows
