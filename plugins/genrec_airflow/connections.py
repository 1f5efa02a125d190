"""Endpoints and credentials from Airflow connections, handed to genrec_core as plain settings.

`genrec_postgres` (a Postgres connection) gives the writer's DSN; `genrec_s3` (an AWS
connection, optionally with `endpoint_url` in its extra for MinIO) gives the S3 endpoint
and keys. A connection that is not defined leaves the setting to the environment/TOML.
"""

from __future__ import annotations

from typing import Any

POSTGRES_CONN_ID = "genrec_postgres"
S3_CONN_ID = "genrec_s3"
SPARK_CONN_ID = "spark_default"


def defined(conn_id: str) -> bool:
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except Exception:
        return False
    return True


def postgres_dsn() -> str | None:
    if not defined(POSTGRES_CONN_ID):
        return None
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    uri = PostgresHook(postgres_conn_id=POSTGRES_CONN_ID).get_uri()
    scheme, _, rest = uri.partition("://")
    return f"{scheme.split('+', 1)[0]}://{rest}"  # a libpq URI: drop SQLAlchemy's "+driver"


def s3_settings() -> dict[str, Any] | None:
    if not defined(S3_CONN_ID):
        return None
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=S3_CONN_ID)
    credentials = hook.get_credentials()
    return {
        "endpoint_url": hook.conn_config.endpoint_url,
        "region": hook.conn_region_name or "us-east-1",
        "access_key_id": credentials.access_key,
        "secret_access_key": credentials.secret_key,
    }


def connection_overrides() -> dict[str, Any]:
    """Settings overrides from the connections that are defined."""
    overrides: dict[str, Any] = {}
    dsn = postgres_dsn()
    if dsn:
        overrides["pg_dsn"] = dsn
    s3 = s3_settings()
    if s3:
        overrides["s3"] = s3
    return overrides
