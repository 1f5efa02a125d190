"""Encode an Arrow table as a PostgreSQL binary COPY stream (`COPY ... FROM STDIN WITH (FORMAT binary)`).

The server then stores fields as sent instead of parsing CSV text into integers and
doubles, which takes about a third off its COPY time. The encoding is vectorised: each
run of fixed-width fields becomes one fixed-size binary column built with numpy, and
Arrow's `binary_join_element_wise` interleaves those with the text columns in C++.

Format (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format"): a
signature, per row an int16 field count and per field an int32 byte length and the
value in network byte order, and an int16 -1 trailer.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genrec_core.errors import DataError

FieldKind = Literal["text", "int4", "float8", "date"]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")  # flags, no extension
TRAILER = (-1).to_bytes(2, "big", signed=True)
_FIXED = {"int4": (">i4", pa.int32()), "float8": (">f8", pa.float64()), "date": (">i4", pa.date32())}
_POSTGRES_EPOCH_DAYS = 10_957  # a binary date counts days from 2000-01-01; Arrow's date32 from 1970-01-01


def _fixed_block(rows: int, fields: list[tuple[str, object]]) -> pa.Array:
    """Fields packed back to back per row (numpy dtype, value or array of values) as one binary column."""
    layout = np.dtype([(f"f{i}", dtype) for i, (dtype, _) in enumerate(fields)])
    packed = np.empty(rows, dtype=layout)
    for i, (_, values) in enumerate(fields):
        packed[f"f{i}"] = values
    fixed = pa.Array.from_buffers(pa.binary(layout.itemsize), rows, [None, pa.py_buffer(packed.view(np.uint8))])
    return fixed.cast(pa.large_binary())


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table[name].combine_chunks()
    if column.null_count:
        raise DataError(f"column {name!r} has {column.null_count} null value(s); it is NOT NULL")
    if isinstance(column.type, pa.DictionaryType):
        column = column.dictionary_decode()
    return column


def encode_rows(table: pa.Table, columns: dict[str, FieldKind]) -> bytes:
    """The whole binary COPY stream (signature, rows, trailer) of `table`'s `columns`, in that order."""
    rows = table.num_rows
    pieces: list[pa.Array] = []
    pending: list[tuple[str, object]] = [(">i2", len(columns))]
    for name, kind in columns.items():
        column = _column(table, name)
        if kind == "text":
            try:
                text = pc.cast(column, pa.large_binary())
            except pa.ArrowInvalid as err:
                raise DataError(f"column {name!r} ({column.type}) cannot be sent as text: {err}") from err
            pending.append((">i4", pc.binary_length(text).to_numpy()))
            pieces += [_fixed_block(rows, pending), text]
            pending = []
        else:
            dtype, arrow_type = _FIXED[kind]
            try:  # a safe cast: an out-of-range rank fails here instead of wrapping
                values = pc.cast(column, arrow_type).to_numpy(zero_copy_only=False)
                if kind == "date":
                    values = values.astype("datetime64[D]").astype(np.int64) - _POSTGRES_EPOCH_DAYS
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise DataError(f"column {name!r} ({column.type}) cannot be sent as {kind}: {err}") from err
            pending += [(">i4", np.dtype(dtype).itemsize), (dtype, values)]
    if pending:
        pieces.append(_fixed_block(rows, pending))
    joined = pc.binary_join_element_wise(*pieces, pa.scalar(b"", pa.large_binary()))
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64, count=rows + 1, offset=joined.offset * 8)
    body = memoryview(joined.buffers()[2])[offsets[0] : offsets[-1]] if rows else b""
    return b"".join((SIGNATURE, body, TRAILER))
