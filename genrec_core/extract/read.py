"""Read raw log partitions (Parquet, CSV or JSON Lines) into one normalised DataFrame.

Every file's columns are checked on the driver from metadata only (a Parquet footer,
a CSV header line): a missing required column is an error naming the file and the
column; a column whose type cannot hold the contract's value (schema drift) sends
that file's rows to quarantine. The result has one row per raw line with the parsed
columns, the raw text of the parsed ones (for quarantine) and two flags the
validator reads: `malformed` (a line that did not parse) and `drift`.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from genrec_core.contract import LOG_COLUMNS, REQUIRED_COLUMNS
from genrec_core.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

_CORRUPT = "_corrupt_record"


@dataclass(frozen=True)
class RawPartition:
    """One day's raw directory: its URI (for messages) and a local path Spark can read."""

    day: dt.date
    uri: str
    path: Path


def data_files(path: Path) -> list[Path]:
    """Data files under a partition directory (Spark's convention: names starting with _ or . are not data)."""
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))


def source_digest(files: list[tuple[str, int]]) -> str:
    """A fingerprint of a partition's file listing (names and sizes): it changes when files are re-delivered."""
    text = "\n".join(f"{name}\t{size}" for name, size in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_events(spark: SparkSession, parts: list[RawPartition], fmt: str) -> DataFrame | None:
    """All rows of the given partitions, normalised; None when they hold no data files.

    Files with the same column layout are read in one scan across days; `dt` comes from
    the partition directory's name (the partitions must share one parent directory).
    """
    if len({p.path.parent for p in parts}) > 1:
        raise ValueError(f"raw partitions must share one parent directory: {[str(p.path) for p in parts]}")
    reader = {"parquet": _read_parquet_group, "csv": _read_csv_group, "jsonl": _read_json_group}[fmt]
    groups: dict[tuple, list[Path]] = defaultdict(list)
    for part in parts:
        for file in data_files(part.path):
            groups[_signature(file, fmt, part)].append(file)
    frames = [
        reader(spark, files, signature, parts[0].path.parent)
        for signature, files in sorted(groups.items(), key=lambda kv: str(kv[1][0]))
    ]
    if not frames:
        return None
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _file_uri(part: RawPartition, file: Path) -> str:
    return f"{part.uri}/{file.relative_to(part.path).as_posix()}"


def _signature(file: Path, fmt: str, part: RawPartition) -> tuple:
    """The column layout of one file, checked for the required columns."""
    if fmt == "parquet":
        try:
            schema = pq.read_schema(file)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{_file_uri(part, file)}: not a readable Parquet file ({exc})") from exc
        columns = tuple((f.name, str(f.type)) for f in schema)
    elif fmt == "csv":
        columns = tuple((name, "string") for name in _csv_header(file))
    else:  # JSON Lines carry their keys per line; a missing key is a null the validator rejects
        return ()
    names = [c for c, _ in columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DataError(f"{_file_uri(part, file)}: required column(s) {missing} missing (found {names})")
    return columns


def _csv_header(file: Path) -> list[str]:
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", newline="", encoding="utf-8") as handle:
        first = handle.readline()
    return next(csv.reader(io.StringIO(first)), [])


def _read_parquet_group(spark: SparkSession, files: list[Path], signature: tuple, base: Path) -> DataFrame:
    from pyspark.sql import functions as F

    types = dict(signature)
    df = (
        spark.read.option("basePath", str(base))
        .parquet(*[str(f) for f in files])
        .withColumn("source_file", F.col("_metadata.file_path"))
    )
    drift = [c for c in LOG_COLUMNS if c in types and not _usable(c, types[c])]
    cols = {}
    for c in LOG_COLUMNS:
        if c not in types:
            cols[c] = F.lit(None).cast("string")
        elif c in drift:
            cols[c] = F.to_json(F.col(c)) if _is_nested(types[c]) else F.col(c).cast("string")
        else:
            cols[c] = F.col(c)
    parsed = _parse(cols, typed={c: types.get(c, "string") for c in LOG_COLUMNS}, drift=bool(drift))
    return df.select(*parsed, F.lit(False).alias("malformed"), F.lit(bool(drift)).alias("drift"), "source_file", "dt")


def _read_csv_group(spark: SparkSession, files: list[Path], signature: tuple, base: Path) -> DataFrame:
    from pyspark.sql.types import StringType, StructField, StructType

    names = [c for c, _ in signature]
    # The schema follows this group's header order, so Spark's positional mapping is right.
    schema = StructType([StructField(n, StringType()) for n in names] + [StructField(_CORRUPT, StringType())])
    df = (
        spark.read.schema(schema)
        .option("header", True)
        .option("mode", "PERMISSIVE")
        .option("basePath", str(base))
        .option("columnNameOfCorruptRecord", _CORRUPT)
        .csv([str(f) for f in files])
    )
    return _text_frame(df, set(names))


def _read_json_group(spark: SparkSession, files: list[Path], signature: tuple, base: Path) -> DataFrame:
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField(n, StringType()) for n in LOG_COLUMNS] + [StructField(_CORRUPT, StringType())])
    df = (
        spark.read.schema(schema)
        .option("mode", "PERMISSIVE")
        .option("basePath", str(base))
        .option("columnNameOfCorruptRecord", _CORRUPT)
        .json([str(f) for f in files])
    )
    return _text_frame(df, set(LOG_COLUMNS))


def _text_frame(df: DataFrame, present: set[str]) -> DataFrame:
    from pyspark.sql import functions as F

    df = df.withColumn("source_file", F.col("_metadata.file_path"))
    cols = {c: F.col(c) if c in present else F.lit(None).cast("string") for c in LOG_COLUMNS}
    parsed = _parse(cols, typed=dict.fromkeys(LOG_COLUMNS, "string"), drift=False)
    return df.select(
        *parsed, F.col(_CORRUPT).isNotNull().alias("malformed"), F.lit(False).alias("drift"), "source_file", "dt"
    )


def _parse(cols: dict[str, Column], typed: dict[str, str], drift: bool) -> list[Column]:
    """Parsed columns plus the raw text of the two that are parsed from text (kept for quarantine).

    A typed Parquet column has no raw text (null): quarantine prints its parsed value instead,
    so valid rows never pay for a conversion to text.
    """
    from pyspark.sql import functions as F

    if drift:  # a drifted file is quarantined whole; keep every value as text
        return [cols[c].cast("string").alias(c) for c in ("user_id", "item_id", "event_type")] + [
            F.lit(None).cast("timestamp").alias("event_ts"),
            F.lit(None).cast("double").alias("value"),
            cols["event_ts"].cast("string").alias("event_ts_raw"),
            cols["value"].cast("string").alias("value_raw"),
        ]
    ts_type, value_type = typed["event_ts"], typed["value"]
    event_ts = (
        cols["event_ts"].cast("timestamp")
        if ts_type.startswith(("timestamp", "date"))
        else cols["event_ts"].try_cast("timestamp")
    )
    value = cols["value"].cast("double") if value_type != "string" else cols["value"].try_cast("double")
    text = F.lit(None).cast("string")
    return [cols[c].cast("string").alias(c) for c in ("user_id", "item_id", "event_type")] + [
        event_ts.alias("event_ts"),
        value.alias("value"),
        (cols["event_ts"] if ts_type == "string" else text).alias("event_ts_raw"),
        (cols["value"] if value_type == "string" else text).alias("value_raw"),
    ]


def _is_nested(arrow_type: str) -> bool:
    return arrow_type.startswith(("struct", "list", "large_list", "map", "fixed_size_list"))


def _usable(column: str, arrow_type: str) -> bool:
    """Whether a Parquet column's type can hold the contract's value for that column."""
    is_int = arrow_type.startswith(("int", "uint"))
    is_text = arrow_type in ("string", "large_string") or arrow_type.startswith("dictionary<values=string")
    if column in ("user_id", "item_id"):
        return is_text or is_int
    if column == "event_type":
        return is_text
    if column == "event_ts":
        return is_text or arrow_type.startswith(("timestamp", "date"))
    return (
        is_text or is_int or arrow_type in ("float", "double", "halffloat", "null") or arrow_type.startswith("decimal")
    )
