"""Publish a run date's lists as Parquet under `recommendations/dt=D/`, manifest written last.

Readers trust only dates with a `_manifest.json`; a rerun removes the manifest
first, then replaces the parts, then writes the new manifest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
from typing import Any

import pyarrow.parquet as pq

from genrec_core.contract import partition_name
from genrec_core.errors import DataError
from genrec_core.storage import Storage, join

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"


def recommendations_uri(output_uri: str, run_date: dt.date) -> str:
    return join(output_uri, "recommendations", partition_name(run_date))


def publish_object_store(storage: Storage, output_uri: str, run_date: dt.date, staged_uri: str,
                         model_info: dict[str, Any]) -> dict[str, Any]:
    """Copy staged part files into the date's prefix and write the manifest; return the manifest."""
    parts = storage.list_files(staged_uri, ".parquet")
    if not parts:
        raise DataError(f"no staged part files under {staged_uri}; refusing to publish an empty batch")
    target = recommendations_uri(output_uri, run_date)
    storage.delete_file(join(target, MANIFEST))
    storage.delete_dir(target)
    files, total = [], 0
    for i, src in enumerate(parts):
        data = storage.read_bytes(src)
        name = f"part-{i:05d}.parquet"
        storage.write_bytes(join(target, name), data)
        rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
        total += rows
        files.append({"name": name, "rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"run_date": run_date.isoformat(), "rows": total, "files": files, **model_info}
    storage.write_json(join(target, MANIFEST), manifest)
    log.info("published %d rows in %d files to %s", total, len(files), target)
    return manifest
