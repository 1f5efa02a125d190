"""Embedded services for local runs and tests (a real Postgres server, a real S3 endpoint)."""
