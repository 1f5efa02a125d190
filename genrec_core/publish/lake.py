"""The object-store output as Delta Lake tables (delta-rs): atomic per-date commits that any engine reads.

```
tables/recommendations/   the lists, partitioned by run_date (the Postgres table's columns)
tables/publications/      one row per published date: rows, model, model version and artifact, run id, version
tables/serving/           one row: the date `latest` serves (publishing moves it forward; rollback moves it back)
```
Publishing D replaces D's partition in one commit (a reader sees the old lists or the new ones, never a
mix, never nothing), then records D in `publications` and moves `serving`. Concurrent commits on S3 rely on
its conditional writes (put-if-absent), which delta-rs uses without a lock; a commit that loses a race on
the same rows is retried. Readers trust `publications`: a date is published once it has a row there.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from genrec_core.contract import RECOMMENDATION_COLUMNS
from genrec_core.errors import DataError
from genrec_core.storage import Storage, join

log = logging.getLogger(__name__)

TABLES = "tables"
LISTS, PUBLICATIONS, SERVING = "recommendations", "publications", "serving"
LISTS_SCHEMA = pa.schema(
    [
        ("run_date", pa.date32()),
        ("user_id", pa.string()),
        ("rank", pa.int32()),
        ("item_id", pa.string()),
        ("score", pa.float64()),
        ("model", pa.string()),
        ("source", pa.string()),
    ]
)
assert tuple(LISTS_SCHEMA.names) == RECOMMENDATION_COLUMNS
PUBLICATIONS_SCHEMA = pa.schema(
    [
        ("run_date", pa.date32()),
        ("rows", pa.int64()),
        ("model", pa.string()),
        ("model_version", pa.string()),
        ("model_uri", pa.string()),
        ("run_id", pa.string()),
        ("lists_version", pa.int64()),  # the `recommendations` table version that committed the date
    ]
)
SERVING_SCHEMA = pa.schema([("run_date", pa.date32()), ("lists_version", pa.int64())])
COMMIT_ATTEMPTS = 8
METADATA_PREFIX = "genrec."

T = TypeVar("T")


def table_uri(output_uri: str, name: str) -> str:
    return join(output_uri, TABLES, name)


def delta_location(storage: Storage, uri: str) -> tuple[str, dict[str, str] | None]:
    """The URI delta-rs opens and its storage options, from our storage settings (None: local disk)."""
    if Storage.is_local(uri):
        _, path = storage.resolve(uri)
        return path, None
    opts = storage.s3_options
    options = {"AWS_REGION": opts.region}
    if opts.endpoint_url:
        options["AWS_ENDPOINT_URL"] = opts.endpoint_url
        if opts.endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if opts.access_key_id:
        options["AWS_ACCESS_KEY_ID"] = opts.access_key_id
        options["AWS_SECRET_ACCESS_KEY"] = opts.secret_access_key or ""
    return uri, options


@dataclass(frozen=True)
class Publication:
    """One published date, as `tables/publications` holds it."""

    run_date: dt.date
    rows: int
    model: str
    model_version: str
    model_uri: str
    run_id: str
    lists_version: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "run_date": self.run_date.isoformat()}


class Lake:
    """The three tables under `<output_uri>/tables/`, opened with one storage's settings."""

    def __init__(
        self,
        storage: Storage,
        output_uri: str,
        client_options: dict[str, str] | None = None,
        target_file_bytes: int | None = None,
    ) -> None:
        """`client_options`: delta-rs object-store settings on top of the storage's (e.g. `retry_timeout`);
        `target_file_bytes`: the size of the lists' data files (delta-rs's default when None)."""
        self.storage = storage
        self.output_uri = output_uri
        self.client_options = client_options or {}
        self.target_file_bytes = target_file_bytes

    def _location(self, name: str) -> tuple[str, dict[str, str] | None]:
        uri, options = delta_location(self.storage, table_uri(self.output_uri, name))
        return uri, ({**options, **self.client_options} if options is not None else None)

    def exists(self, name: str = LISTS) -> bool:
        from deltalake import DeltaTable

        uri, options = self._location(name)
        return bool(DeltaTable.is_deltatable(uri, storage_options=options))

    def table(self, name: str, version: int | dt.datetime | None = None) -> Any:
        """The `deltalake.DeltaTable` (at `version`, a number or a time, when given)."""
        from deltalake import DeltaTable

        uri, options = self._location(name)
        table = DeltaTable(uri, storage_options=options)
        if version is not None:
            table.load_as_version(version)
        return table

    # ---- reading -------------------------------------------------------------------------------

    def publications(self) -> dict[dt.date, Publication]:
        """Every published date's record (empty before the first publish)."""
        if not self.exists(PUBLICATIONS):
            return {}
        rows = self.table(PUBLICATIONS).to_pyarrow_table().to_pylist()
        return {row["run_date"]: Publication(**row) for row in rows}

    def serving_date(self) -> dt.date | None:
        if not self.exists(SERVING):
            return None
        rows = self.table(SERVING).to_pyarrow_table().to_pylist()
        return rows[0]["run_date"] if rows else None

    def read_date(self, run_date: dt.date, version: int | dt.datetime | None = None) -> pa.Table:
        """One date's lists (at a table version or time, for time travel)."""
        return self.table(LISTS, version).to_pyarrow_table(filters=[("run_date", "=", run_date)])

    # ---- writing -------------------------------------------------------------------------------

    def ensure_tables(self) -> None:
        """Create the three tables (empty) where missing, so that every write replaces rows it has read:
        two first publishes racing on a table that does not exist yet would otherwise both count as first."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        for name, schema, partition_by in (
            (LISTS, LISTS_SCHEMA, ["run_date"]),
            (PUBLICATIONS, PUBLICATIONS_SCHEMA, None),
            (SERVING, SERVING_SCHEMA, None),
        ):
            if self.exists(name):
                continue
            uri, options = self._location(name)
            try:
                DeltaTable.create(
                    uri,
                    schema,
                    mode="ignore",
                    partition_by=partition_by,
                    name=f"genrec_{name}",
                    storage_options=options,
                )
            except DeltaError:
                if not self.exists(name):  # not a lost race with another creator: a real failure
                    raise

    def publish(
        self, run_date: dt.date, read_parts: Callable[[], Iterator[pa.Table]], info: dict[str, Any]
    ) -> Publication:
        """Replace D's lists in one commit, record D in `publications`, and serve D if it is the newest.

        `read_parts` yields the staged part tables; it is called again when a concurrent commit of the same
        date wins the race and this one must be redone.
        """
        metadata = {
            f"{METADATA_PREFIX}run_date": run_date.isoformat(),
            **{f"{METADATA_PREFIX}{key}": str(info.get(key, "")) for key in ("model", "model_version", "run_id")},
        }

        def replace() -> tuple[int, int]:
            counted = _Counted(run_date)
            batches = counted.check(as_lists_batches(read_parts()))
            first = next(batches, None)
            if first is None:
                raise DataError(f"no rows staged for {run_date}; refusing to publish an empty batch")
            reader = pa.RecordBatchReader.from_batches(LISTS_SCHEMA, _chain(first, batches))
            return self._write(LISTS, reader, run_date, metadata, partitioned=True), counted.rows

        self.ensure_tables()
        version, rows = with_retries(replace, f"replace {run_date} in {LISTS}")
        publication = Publication(
            run_date,
            rows,
            str(info.get("model", "")),
            str(info.get("model_version", "")),
            str(info.get("model_uri", "")),
            str(info.get("run_id", "")),
            version,
        )
        self._record(publication)
        self._serve_if_newest(publication)
        log.info("published %d rows for %s as version %d of %s", rows, run_date, version, LISTS)
        return publication

    def _write(
        self, name: str, data: Any, run_date: dt.date, metadata: dict[str, str], partitioned: bool = False
    ) -> int:
        from deltalake import CommitProperties, write_deltalake

        uri, options = self._location(name)
        token = uuid.uuid4().hex  # finds this commit's version even when another commit lands right after it
        write_deltalake(
            uri,
            data,
            partition_by=["run_date"] if partitioned else None,
            mode="overwrite",
            predicate=f"run_date = '{run_date.isoformat()}'",
            storage_options=options,
            target_file_size=self.target_file_bytes if partitioned else None,
            commit_properties=CommitProperties(
                custom_metadata={**metadata, f"{METADATA_PREFIX}commit": token}, max_commit_retries=COMMIT_ATTEMPTS
            ),
        )
        for commit in self.table(name).history(limit=50):
            if commit.get(f"{METADATA_PREFIX}commit") == token:
                return int(commit["version"])
        raise DataError(f"the commit to {uri} did not appear in its last 50 versions")

    def _record(self, publication: Publication) -> None:
        row = pa.Table.from_pylist([publication.__dict__], PUBLICATIONS_SCHEMA)
        metadata = {f"{METADATA_PREFIX}run_date": publication.run_date.isoformat()}
        with_retries(lambda: self._write(PUBLICATIONS, row, publication.run_date, metadata), f"record {PUBLICATIONS}")

    def _serve_if_newest(self, publication: Publication) -> None:
        def move() -> None:
            table = self.table(SERVING)
            rows = table.to_pyarrow_table().to_pylist()
            if not rows or publication.run_date >= rows[0]["run_date"]:
                self._point(publication.run_date, publication.lists_version, table)

        with_retries(move, f"move {SERVING}")

    def _point(self, run_date: dt.date, lists_version: int, read: Any) -> None:
        """Overwrite the pointer, only if no commit came after `read` (the table as read)."""
        from deltalake import CommitProperties, write_deltalake

        _, options = self._location(SERVING)
        row = pa.Table.from_pylist([{"run_date": run_date, "lists_version": lists_version}], SERVING_SCHEMA)
        write_deltalake(
            read,
            row,
            mode="overwrite",
            storage_options=options,
            # no rebasing onto a newer version: a pointer moved by someone else since `read` must be read again
            commit_properties=CommitProperties(
                custom_metadata={f"{METADATA_PREFIX}serving": run_date.isoformat()}, max_commit_retries=0
            ),
        )

    def serve(self, run_date: dt.date) -> dt.date | None:
        """Serve a published date (a rollback); return the date served before."""
        publications = self.publications()
        if run_date not in publications:
            raise DataError(
                f"cannot serve {run_date} from {table_uri(self.output_uri, LISTS)}: it is not published "
                f"(published: {sorted(d.isoformat() for d in publications)})"
            )
        previous = self.serving_date()
        version = publications[run_date].lists_version
        with_retries(
            lambda: self._point(run_date, version, self.table(SERVING)),
            f"move {SERVING}",
        )
        return previous

    def drop(self, run_date: dt.date) -> dt.date | None:
        """Remove a date's lists and record; if it was served, serve the newest remaining date. Return it."""
        publications = self.publications()
        if run_date not in publications:
            raise DataError(f"no published date {run_date} in {table_uri(self.output_uri, PUBLICATIONS)} to drop")
        self.delete_dates([run_date])
        served = self.serving_date()
        if served == run_date:
            remaining = sorted((d for d in publications if d != run_date), reverse=True)
            if remaining:
                self.serve(remaining[0])
                return remaining[0]
            with_retries(lambda: self.table(SERVING).delete(), f"clear {SERVING}")
            return None
        return served

    def delete_dates(self, dates: list[dt.date]) -> None:
        """Remove dates from the lists (one commit), then from `publications`; readers see them go at once."""
        if not dates:
            return
        days = ", ".join(f"'{d.isoformat()}'" for d in sorted(dates))
        predicate = f"run_date IN ({days})"
        with_retries(lambda: self.table(LISTS).delete(predicate), f"delete from {LISTS}")
        with_retries(lambda: self.table(PUBLICATIONS).delete(predicate), f"delete from {PUBLICATIONS}")

    def vacuum(self, retention_hours: int) -> int:
        """Delete files no snapshot of the last `retention_hours` needs (and any a killed publish left)."""
        removed = 0
        for name in (LISTS, PUBLICATIONS, SERVING):
            if self.exists(name):
                removed += len(
                    self.table(name).vacuum(
                        retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False, full=True
                    )
                )
        return removed


class _Counted:
    """Counts the streamed rows and refuses a batch holding another date (it would land in another partition)."""

    def __init__(self, run_date: dt.date) -> None:
        self.run_date = run_date
        self.rows = 0

    def check(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            dates = pc.unique(batch.column("run_date"))
            if len(dates) and dates.to_pylist() != [self.run_date]:
                raise DataError(
                    f"staged rows for {self.run_date} hold other run dates: {sorted(map(str, dates.to_pylist()))}"
                )
            self.rows += batch.num_rows
            yield batch


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def as_lists_batches(tables: Iterator[pa.Table]) -> Iterator[pa.RecordBatch]:
    """The scorer's part tables as record batches of the lists' schema (refuses a part missing a column)."""
    for table in tables:
        missing = [name for name in LISTS_SCHEMA.names if name not in table.column_names]
        if missing:
            raise DataError(f"a staged part lacks the columns {missing}")
        yield from table.select(LISTS_SCHEMA.names).cast(LISTS_SCHEMA).to_batches()


def with_retries(action: Callable[[], T], what: str, attempts: int = COMMIT_ATTEMPTS) -> T:
    """Run a commit, retrying (with jittered backoff) when a concurrent commit won the race."""
    from deltalake.exceptions import CommitFailedError

    for attempt in range(1, attempts + 1):
        try:
            return action()
        except CommitFailedError as exc:
            if attempt == attempts:
                raise
            delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())  # jitter is timing only, not data
            log.warning("%s: a concurrent commit won (%s); retry %d/%d in %.2f s", what, exc, attempt, attempts, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
