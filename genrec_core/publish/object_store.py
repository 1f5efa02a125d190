"""Publish a run date's lists to the object store's Delta tables (`publish/lake.py`), and keep it tidy.

Before 0.5 the output was Parquet under `recommendations/dt=D/` with a `_manifest.json` written last.
Those folders stay readable where they are; what they hold is copied into the tables by
`migrate_manifests` (the first publish after the upgrade runs it; `genrec publish migrate` runs it
ahead), and until then the champion lookup and retention read their manifests as published dates.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from genrec_core import layout
from genrec_core.errors import DataError
from genrec_core.publish.lake import LISTS, Lake, Publication, table_uri
from genrec_core.storage import Storage, join

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"  # the 0.4 layout's marker of a published date


def publish_object_store(
    storage: Storage, output_uri: str, run_date: dt.date, parts: list[str], model_info: dict[str, Any]
) -> Publication:
    """Replace D's lists in the Delta table from the staged part files (URIs); return D's publication."""
    if not parts:
        raise DataError(f"no staged part files for {run_date}; refusing to publish an empty batch")
    migrate_manifests(storage, output_uri)
    return Lake(storage, output_uri).publish(run_date, _reader(storage, parts), model_info)


def _reader(storage: Storage, parts: list[str]) -> Callable[[], Iterator[pa.Table]]:
    """Reads the part files afresh on each call (a commit redone after a lost race reads them again)."""
    return lambda: (storage.read_table(uri) for uri in parts)


# ---- the 0.4 layout: recommendations/dt=D/ + _manifest.json ------------------------------------


def manifested_dates(storage: Storage, output_uri: str) -> list[dt.date]:
    """Dates the 0.4 layout published (those with a manifest), newest first."""
    root = layout.recommendations_root(output_uri)
    if not storage.exists(root):
        return []
    dates = []
    for day, uri in _dated_dirs(storage, root):
        if storage.exists(join(uri, MANIFEST)):
            dates.append(day)
    return sorted(dates, reverse=True)


def _manifest(storage: Storage, output_uri: str, run_date: dt.date) -> dict[str, Any]:
    manifest: dict[str, Any] = storage.read_json(join(layout.recommendations_uri(output_uri, run_date), MANIFEST))
    return manifest


def migrate_manifests(storage: Storage, output_uri: str) -> list[dt.date]:
    """Copy every manifested 0.4 date the tables lack into them (oldest first); return those dates.

    The folders stay as they are (readers of the old layout keep working) until retention removes them.
    """
    legacy = manifested_dates(storage, output_uri)
    if not legacy:
        return []
    lake = Lake(storage, output_uri)
    have = lake.publications()
    moved = []
    for day in sorted(d for d in legacy if d not in have):
        manifest = _manifest(storage, output_uri, day)
        folder = layout.recommendations_uri(output_uri, day)
        parts = [join(folder, entry["name"]) for entry in manifest["files"]]
        info = {**manifest, "run_id": f"migrated from {join(folder, MANIFEST)}"}
        publication = lake.publish(day, _reader(storage, parts), info)
        if publication.rows != manifest["rows"]:
            raise DataError(f"{folder}: the manifest says {manifest['rows']} rows, its files hold {publication.rows}")
        moved.append(day)
    if moved:
        log.info("migrated %d manifested dates into %s", len(moved), join(output_uri, "tables"))
    return moved


# ---- what is published ---------------------------------------------------------------------------


def published(storage: Storage, output_uri: str) -> dict[dt.date, dict[str, Any]]:
    """Every published date's record (model, model_uri, model_version, rows), the tables' over the 0.4 manifests'."""
    records = {day: _manifest(storage, output_uri, day) for day in manifested_dates(storage, output_uri)}
    records.update({day: p.to_dict() for day, p in Lake(storage, output_uri).publications().items()})
    return records


def published_dates(storage: Storage, output_uri: str) -> list[dt.date]:
    """Published dates, newest first."""
    return sorted(published(storage, output_uri), reverse=True)


# ---- retention -----------------------------------------------------------------------------------

# Per-date folders that retention prunes: 0.4 outputs, extracts (with their quarantine), staged parts.
RETAINED_PREFIXES = (layout.RECOMMENDATIONS, layout.SCORED, layout.EXTRACT)


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
    return _cutoff(published_dates(storage, output_uri), keep_dates)


def _cutoff(dates: list[dt.date], keep_dates: int) -> dt.date | None:
    return dates[keep_dates - 1] if len(dates) >= keep_dates else None


def apply_object_retention(
    storage: Storage, output_uri: str, keep_dates: int, vacuum_hours: int | None = None
) -> list[str]:
    """Remove dates older than the newest `keep_dates` published ones; return what was removed.

    From the tables: those dates' lists and records (one commit each; the served date is never removed),
    then a vacuum deletes the files no snapshot of the last `vacuum_hours` needs (default: `keep_dates`
    days, so time travel reaches as far back as the dates kept). From the folders: extracts, staged parts,
    0.4 outputs and model artifacts of those dates, except the artifacts a kept date names.
    Until `keep_dates` dates are published nothing is removed: a date older than every published one may
    still be in flight (a backfill beside the nightly run) and needs its extract, model and parts.
    """
    records = published(storage, output_uri)
    dates = sorted(records, reverse=True)
    cutoff = _cutoff(dates, keep_dates)
    if cutoff is None:
        return []
    lake = Lake(storage, output_uri)
    served = lake.serving_date()
    kept = [d for d in dates if d >= cutoff or d == served]
    old = [d for d in lake.publications() if d not in kept]
    lake.delete_dates(old)
    removed = [join(table_uri(output_uri, LISTS), f"run_date={d}") for d in sorted(old)]
    if lake.exists():
        lake.vacuum(24 * keep_dates if vacuum_hours is None else vacuum_hours)
    protected = {records[d].get("model_uri") for d in kept}
    candidates = []
    for prefix in RETAINED_PREFIXES:
        candidates += _dated_dirs(storage, join(output_uri, prefix))
    for model in storage.list_dir(layout.models_root(output_uri)):
        candidates += _dated_dirs(storage, layout.models_root(output_uri, model))
    for day, uri in sorted(candidates):
        if day < cutoff and day not in kept and uri not in protected:
            if uri.startswith(layout.recommendations_root(output_uri)):
                storage.delete_file(join(uri, MANIFEST))  # readers of the old layout stop trusting it first
            storage.delete_dir(uri)
            removed.append(uri)
    if removed:
        log.info("retention: removed %d dates and folders older than %s", len(removed), cutoff)
    return removed
