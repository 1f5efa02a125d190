"""Registers the genrec UI page with Airflow 3 (a FastAPI app plus a navigation entry; no FAB)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from genrec_airflow.ui import create_app


class GenrecPlugin(AirflowPlugin):
    name = "genrec"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/genrec", "name": "genrec"}]
    external_views = [
        {"name": "genrec", "href": "genrec/", "destination": "nav", "category": "browse", "url_route": "genrec"}
    ]
