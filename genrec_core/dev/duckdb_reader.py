"""A DuckDB connection that reads the Delta tables as any downstream reader would (tests, benchmarks).

The `delta` and `httpfs` extensions come from pip packages (`duckdb-extension-delta`,
`duckdb-extension-httpfs`), so nothing is downloaded at run time; S3 credentials go in a DuckDB secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrec_core.storage import S3Options


def _extension_file(module: Any) -> str:
    files = sorted(Path(module.__file__).parent.glob("extensions/*/*.duckdb_extension"))
    if not files:
        raise FileNotFoundError(f"no DuckDB extension file in the {module.__name__} package")
    return str(files[-1])


def connect(s3: S3Options | None = None) -> Any:
    """An in-memory DuckDB with `delta_scan` (and S3 access through `s3`, when given)."""
    import duckdb
    import duckdb_extension_delta
    import duckdb_extension_httpfs

    con = duckdb.connect()
    for module in (duckdb_extension_httpfs, duckdb_extension_delta):
        con.load_extension(_extension_file(module))
    if s3 is not None:
        host, use_ssl = "s3.amazonaws.com", True
        if s3.endpoint_url:
            scheme, _, host = s3.endpoint_url.partition("://")
            use_ssl = scheme == "https"
        con.execute(
            "CREATE SECRET genrec_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
            [s3.access_key_id or "", s3.secret_access_key or "", s3.region, host, use_ssl],
        )
    return con
