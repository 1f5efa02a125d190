#!/bin/bash
# One-shot init (the compose file's airflow-init service): Airflow's metadata schema, genrec's
# Postgres migrations, and the connections the DAG resolves. Idempotent: safe on every start.
set -euo pipefail

airflow db migrate

pg_uri="postgresql://genrec_writer:${GENREC_WRITER_PASSWORD}@postgres:5432/genrec"
GENREC_PG_DSN="${pg_uri}" genrec db upgrade

replace_connection() {  # name, then `airflow connections add` options
    local name="$1"; shift
    airflow connections delete "${name}" >/dev/null 2>&1 || true
    airflow connections add "${name}" "$@" >/dev/null
    echo "connection ${name} set"
}
replace_connection genrec_postgres --conn-uri "${pg_uri}"
replace_connection genrec_s3 --conn-type aws --conn-login "${MINIO_ROOT_USER}" \
    --conn-password "${MINIO_ROOT_PASSWORD}" \
    --conn-extra '{"endpoint_url": "http://minio:9000", "region_name": "us-east-1"}'
replace_connection spark_default --conn-type spark --conn-host spark://spark-master --conn-port 7077 \
    --conn-extra '{"deploy-mode": "client"}'
