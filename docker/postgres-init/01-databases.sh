#!/bin/bash
# First start of the Postgres volume: one database and owner role for Airflow's metadata, one
# database for the recommendation tables with a writer role (the read-only genrec_reader role
# is created by genrec's own migrations; its password is set here).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres \
     -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v writer_pw="$GENREC_WRITER_PASSWORD" \
     -v reader_pw="$GENREC_READER_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE genrec_writer LOGIN PASSWORD :'writer_pw';
CREATE DATABASE genrec OWNER genrec_writer;
CREATE ROLE genrec_reader LOGIN PASSWORD :'reader_pw';
SQL
