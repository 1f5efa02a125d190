"""Shared fixtures: tiny generated logs and the real services (Postgres, an S3 HTTP endpoint, Spark, Airflow)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Airflow reads its configuration at import time: isolate it before anything imports airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="genrec-test-airflow-"))
from genrec_core.dev.airflow_env import airflow_env

for _key, _value in airflow_env(_AIRFLOW_HOME).items():
    if _key.startswith("AIRFLOW") or _key == "SPARK_LOCAL_IP":
        os.environ[_key] = _value
for _key in [k for k in os.environ if k.startswith("GENREC_")]:
    del os.environ[_key]  # tests state their settings explicitly

import logging

import boto3
import pytest

from genrec_core.dev.generate import generate_logs
from genrec_core.dev.services.local_postgres import LocalPostgres
from genrec_core.storage import S3Options, Storage
from tests.support import TINY

logging.getLogger("py4j").setLevel(logging.WARNING)  # its shutdown message races pytest's closed streams


@pytest.fixture(scope="session")
def postgres() -> LocalPostgres:
    """A real PostgreSQL server on loopback for the whole session."""
    server = LocalPostgres().start()
    yield server
    server.stop()


@pytest.fixture()
def pg_dsn(postgres: LocalPostgres) -> str:
    """A fresh, empty database on the session's server for one test."""
    import psycopg2
    from psycopg2 import sql

    name = f"t_{os.urandom(4).hex()}"
    admin = psycopg2.connect(host="127.0.0.1", port=postgres.port, user=postgres.user, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()
    return f"postgresql://{postgres.user}@127.0.0.1:{postgres.port}/{name}"


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """moto's S3 server: a real HTTP endpoint on loopback, in its own process."""
    from genrec_core.dev.services.moto_s3 import moto_s3

    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture()
def s3_bucket(s3_endpoint: str) -> str:
    """A new bucket for one test; returns its s3:// URI."""
    name = f"genrec-{os.urandom(4).hex()}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture()
def s3_storage(s3_endpoint: str) -> Storage:
    return Storage(
        S3Options(endpoint_url=s3_endpoint, region="us-east-1", access_key_id="testing", secret_access_key="testing")
    )


@pytest.fixture(scope="session")
def tiny_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny deterministic raw log on local disk (shared; tests must not modify it)."""
    out = tmp_path_factory.mktemp("events")
    generate_logs(TINY, out.as_uri())
    return out


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The isolated Airflow home with its metadata database migrated."""
    from genrec_core.dev.airflow_env import migrate_metadata_db

    migrate_metadata_db(dict(os.environ))
    return _AIRFLOW_HOME
