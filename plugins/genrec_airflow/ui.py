"""The "genrec" page: metric history per model (an SVG plot), the last runs, row counts.

Served by a small FastAPI app that the Airflow 3 API server mounts (`fastapi_apps`) and
links from its navigation (`external_views`). Reads `genrec.runs` with the writer's DSN
(connection `genrec_postgres` or `GENREC_PG_DSN`). The page is plain HTML and SVG.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

PLOTTED = ("ndcg", "recall", "coverage")
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
_W, _H, _PAD = 720, 260, 40


def _metric(metrics: dict[str, Any] | None, name: str) -> float | None:
    for key, value in (metrics or {}).items():
        if key.split("@")[0] == name and isinstance(value, (int, float)):
            return float(value)
    return None


def series(runs: list[dict[str, Any]], metric: str) -> dict[str, list[tuple[dt.date, float]]]:
    """Per model, (run date, metric) of its published runs, by date (a rerun's newest record wins)."""
    by_model: dict[str, dict[dt.date, float]] = {}
    for run in runs:
        value = _metric(run.get("metrics"), metric)
        if run.get("status") == "published" and value is not None and run.get("model"):
            by_model.setdefault(run["model"], {})[run["run_date"]] = value
    return {model: sorted(points.items()) for model, points in sorted(by_model.items())}


def svg_plot(runs: list[dict[str, Any]], metric: str) -> str:
    """One line per model over run dates, y from 0 to the largest value."""
    lines = series(runs, metric)
    dates = sorted({d for points in lines.values() for d, _ in points})
    top = max([v for points in lines.values() for _, v in points] + [1e-9])
    parts = [
        f'<svg class="plot" data-metric="{metric}" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'role="img" aria-label="{metric} over run dates">',
        f'<text x="{_PAD}" y="16" font-size="13">{html.escape(metric)} by run date</text>',
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 10}" y2="{_H - _PAD}" stroke="#888"/>',
        f'<line x1="{_PAD}" y1="24" x2="{_PAD}" y2="{_H - _PAD}" stroke="#888"/>',
        f'<text x="4" y="30" font-size="11">{top:.3f}</text>',
        f'<text x="4" y="{_H - _PAD}" font-size="11">0</text>',
    ]
    if dates:
        parts.append(f'<text x="{_PAD}" y="{_H - 18}" font-size="11">{dates[0]}</text>')
        parts.append(f'<text x="{_W - 90}" y="{_H - 18}" font-size="11">{dates[-1]}</text>')

    def x(day: dt.date) -> float:
        span = max((dates[-1] - dates[0]).days, 1)
        return _PAD + (day - dates[0]).days / span * (_W - _PAD - 20)

    def y(value: float) -> float:
        return _H - _PAD - value / top * (_H - _PAD - 30)

    for i, (model, points) in enumerate(lines.items()):
        color = _COLORS[i % len(_COLORS)]
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in points)
        parts.append(
            f'<polyline class="series" data-model="{html.escape(model)}" fill="none" stroke="{color}" '
            f'stroke-width="2" points="{coords}"/>'
        )
        parts.extend(
            f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"><title>{html.escape(model)} '
            f"{d}: {v:.4f}</title></circle>"
            for d, v in points
        )
        parts.append(
            f'<text x="{_W - 150}" y="{30 + 14 * i}" font-size="12" fill="{color}">{html.escape(model)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_page(runs: list[dict[str, Any]], error: str | None = None) -> str:
    rows = []
    for run in reversed(runs[-30:]):
        gate = (run.get("metrics") or {}).get("gate") or {}
        decision = "forced" if gate.get("forced") else "passed" if gate.get("passed") else "rejected" if gate else ""
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    run["run_date"],
                    run["status"],
                    run.get("model_version") or run.get("model") or "",
                    f"{_metric(run.get('metrics'), 'ndcg'):.4f}"
                    if _metric(run.get("metrics"), "ndcg") is not None
                    else "",
                    decision,
                    run.get("rows_published") if run.get("rows_published") is not None else "",
                    run.get("detail") or "",
                )
            )
            + "</tr>"
        )
    plots = "".join(svg_plot(runs, metric) for metric in PLOTTED)
    notice = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>genrec</title>
<style>body{{font-family:sans-serif;margin:16px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}} .error{{color:#b00}}</style></head>
<body><h1>genrec</h1>{notice}
<h2>Metric history</h2>{plots}
<h2>Last runs</h2>
<table id="runs"><tr><th>run date</th><th>status</th><th>model</th><th>ndcg</th><th>gate</th><th>rows</th>
<th>detail</th></tr>{"".join(rows)}</table></body></html>"""


def create_app() -> Any:
    """The FastAPI app the plugin mounts at /genrec."""
    import asyncio

    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    app = FastAPI(title="genrec")

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        from genrec_airflow.runtime import settings

        try:
            resolved = settings({})
            if resolved.pg_dsn is None:
                return render_page([], "no database configured (connection genrec_postgres or GENREC_PG_DSN)")
            from genrec_core.publish.postgres import run_history

            runs = await asyncio.to_thread(run_history, resolved.pg_dsn.get_secret_value())
        except Exception as exc:
            return render_page([], f"cannot read genrec.runs: {exc}")
        return render_page(runs)

    return app
