"""Business filters applied before top-k: items never to recommend, and an optional allow-list.

Sources (all optional, combined): Parquet files with an `item_id` column named in the
settings, and the Postgres tables `genrec.item_exclusions` / `genrec.item_allowlist`.
An allow-list is in force only when some source lists at least one item.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrec_core.data.interactions import Vocabulary
from genrec_core.errors import DataError
from genrec_core.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemFilter:
    excluded: frozenset[str] = frozenset()
    allowed: frozenset[str] | None = None

    def eligible(self, items: Vocabulary) -> np.ndarray | None:
        """Bool per item index (True = may be recommended), or None when nothing is filtered."""
        if not self.excluded and self.allowed is None:
            return None
        ids = items.ids.tolist()
        mask = np.ones(len(ids), dtype=bool)
        if self.excluded:
            mask &= np.fromiter((i not in self.excluded for i in ids), dtype=bool, count=len(ids))
        if self.allowed is not None:
            mask &= np.fromiter((i in self.allowed for i in ids), dtype=bool, count=len(ids))
        return mask

    def summary(self) -> dict[str, Any]:
        return {"excluded": len(self.excluded), "allowed": None if self.allowed is None else len(self.allowed)}


def _parquet_ids(storage: Storage, uri: str) -> set[str]:
    table = storage.read_table(uri)
    if "item_id" not in table.column_names:
        raise DataError(f"filter file {uri} has no item_id column (found {table.column_names})")
    return {str(v) for v in table.column("item_id").to_pylist() if v is not None}


def _table_ids(dsn: str, table: str) -> set[str]:
    from psycopg2 import sql

    from genrec_core.publish.connection import connect

    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT item_id FROM {}").format(sql.Identifier("genrec", table)))
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def load_item_filter(
    storage: Storage, exclusions_uri: str | None, allowlist_uri: str | None, dsn: str | None
) -> ItemFilter:
    excluded: set[str] = set()
    allowed: set[str] = set()
    if exclusions_uri:
        excluded |= _parquet_ids(storage, exclusions_uri)
    if allowlist_uri:
        allowed |= _parquet_ids(storage, allowlist_uri)
    if dsn:
        from genrec_core.publish.migrations import upgrade

        upgrade(dsn)
        excluded |= _table_ids(dsn, "item_exclusions")
        allowed |= _table_ids(dsn, "item_allowlist")
    result = ItemFilter(frozenset(excluded), frozenset(allowed) if allowed else None)
    log.info("item filters: %s", result.summary())
    return result
