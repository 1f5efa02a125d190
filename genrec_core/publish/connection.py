"""Postgres connections with errors that say what to check."""

from __future__ import annotations

import psycopg2
import psycopg2.extensions

from genrec_core.errors import ServiceError


def connect(dsn: str, connect_timeout: int = 10) -> psycopg2.extensions.connection:
    try:
        return psycopg2.connect(dsn, connect_timeout=connect_timeout, application_name="genrec")
    except psycopg2.OperationalError as exc:
        safe = psycopg2.extensions.parse_dsn(dsn)
        safe.pop("password", None)
        raise ServiceError(
            f"cannot connect to Postgres ({safe}): {str(exc).strip()}; "
            "set GENREC_PG_DSN or the genrec_postgres connection"
        ) from exc
