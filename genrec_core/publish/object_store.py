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

from genrec_core import layout
from genrec_core.errors import DataError
from genrec_core.storage import Storage, join

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"


def publish_object_store(
    storage: Storage, output_uri: str, run_date: dt.date, parts: list[str], model_info: dict[str, Any]
) -> dict[str, Any]:
    """Copy staged part files (URIs) into the date's prefix and write the manifest; return the manifest."""
    if not parts:
        raise DataError(f"no staged part files for {run_date}; refusing to publish an empty batch")
    target = layout.recommendations_uri(output_uri, run_date)
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


# Per-date folders that retention prunes: run outputs, extracts (with their quarantine), staged parts.
RETAINED_PREFIXES = (layout.RECOMMENDATIONS, layout.SCORED, layout.EXTRACT)


def manifested_dates(storage: Storage, output_uri: str) -> list[dt.date]:
    """Dates whose recommendations carry a manifest (the only ones readers trust), newest first."""
    root = layout.recommendations_root(output_uri)
    dates = []
    for name in storage.list_dir(root):
        if name.startswith("dt=") and storage.exists(join(root, name, MANIFEST)):
            dates.append(dt.date.fromisoformat(name[3:]))
    return sorted(dates, reverse=True)


def _dated_dirs(storage: Storage, uri: str) -> list[tuple[dt.date, str]]:
    out = []
    for name in storage.list_dir(uri):
        if name.startswith("dt="):
            try:
                out.append((dt.date.fromisoformat(name[3:]), join(uri, name)))
            except ValueError:
                continue  # not ours; leave it alone
    return out


def retention_cutoff(storage: Storage, output_uri: str, keep_dates: int) -> dt.date | None:
    """The oldest date retention keeps (the `keep_dates`-th newest published one); None while fewer are published."""
    return _cutoff(manifested_dates(storage, output_uri), keep_dates)


def _cutoff(published: list[dt.date], keep_dates: int) -> dt.date | None:
    return published[keep_dates - 1] if len(published) >= keep_dates else None


def apply_object_retention(storage: Storage, output_uri: str, keep_dates: int) -> list[str]:
    """Remove dated folders older than the newest `keep_dates` manifested dates; return what was removed.

    Until `keep_dates` dates are published nothing is removed: a date older than every published one
    may still be in flight (a backfill beside the nightly run) and needs its extract, model and parts.
    Model artifacts referenced by a kept manifest (the served model among them) are never removed.
    """
    published = manifested_dates(storage, output_uri)
    cutoff = _cutoff(published, keep_dates)
    if cutoff is None:
        return []
    kept = published[:keep_dates]
    protected = {
        storage.read_json(join(layout.recommendations_uri(output_uri, d), MANIFEST)).get("model_uri") for d in kept
    }
    candidates = []
    for prefix in RETAINED_PREFIXES:
        candidates += _dated_dirs(storage, join(output_uri, prefix))
    for model in storage.list_dir(layout.models_root(output_uri)):
        candidates += _dated_dirs(storage, layout.models_root(output_uri, model))
    removed = []
    for day, uri in sorted(candidates):
        if day < cutoff and uri not in protected:
            if uri.startswith(layout.recommendations_root(output_uri)):
                storage.delete_file(join(uri, MANIFEST))  # readers stop trusting it first
            storage.delete_dir(uri)
            removed.append(uri)
    if removed:
        log.info("retention: removed %d folders older than %s", len(removed), cutoff)
    return removed
