"""Airflow-side glue for genrec: connections, the published-lists Asset, alerts, the UI page.

Everything here is small and Airflow-specific; the work itself lives in `genrec_core`,
which never imports Airflow.
"""
