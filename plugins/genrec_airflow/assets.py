"""The Asset a successful publish updates; downstream DAGs schedule on it."""

from __future__ import annotations

from airflow.sdk import Asset

# Updated once per published run date; the event's extra carries run_date, rows and model_version.
RECOMMENDATIONS = Asset(name="genrec_recommendations", uri="genrec://recommendations")
