"""The "genrec" page: the served model's metric over dates (marked where the model changed), the last
model selection, the metric history per model (SVG plots), the last runs, row counts.

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


def served(runs: list[dict[str, Any]], metric: str) -> list[tuple[dt.date, str, float]]:
    """(run date, served model, metric) of each published date, by date (a rerun's newest record wins)."""
    points: dict[dt.date, tuple[str, float]] = {}
    for run in runs:
        value = _metric(run.get("metrics"), metric)
        if run.get("status") == "published" and value is not None:
            points[run["run_date"]] = (run.get("model") or "", value)
    return [(day, model, value) for day, (model, value) in sorted(points.items())]


def svg_served(runs: list[dict[str, Any]], metric: str = "ndcg") -> str:
    """The served model's metric by run date; a dashed line and the new model's name where it changed."""
    points = served(runs, metric)
    top = max([v for _, _, v in points] + [1e-9])
    parts = [
        f'<svg class="served" data-metric="{metric}" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'role="img" aria-label="served model {metric} over run dates">',
        f'<text x="{_PAD}" y="16" font-size="13">served model: {html.escape(metric)} on the held-out day</text>',
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 10}" y2="{_H - _PAD}" stroke="#888"/>',
        f'<line x1="{_PAD}" y1="24" x2="{_PAD}" y2="{_H - _PAD}" stroke="#888"/>',
        f'<text x="4" y="30" font-size="11">{top:.3f}</text>',
        f'<text x="4" y="{_H - _PAD}" font-size="11">0</text>',
    ]
    if points:
        first, last = points[0][0], points[-1][0]
        span = max((last - first).days, 1)

        def x(day: dt.date) -> float:
            return _PAD + (day - first).days / span * (_W - _PAD - 20)

        def y(value: float) -> float:
            return _H - _PAD - value / top * (_H - _PAD - 30)

        parts.append(f'<text x="{_PAD}" y="{_H - 18}" font-size="11">{first}</text>')
        parts.append(f'<text x="{_W - 90}" y="{_H - 18}" font-size="11">{last}</text>')
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, _, v in points)
        parts.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{coords}"/>')
        previous, changes = None, 0
        for day, model, value in points:
            if model != previous:  # a dashed line and the model's name; names of close changes are staggered
                parts.append(
                    f'<line class="change" data-model="{html.escape(model)}" x1="{x(day):.1f}" y1="24" '
                    f'x2="{x(day):.1f}" y2="{_H - _PAD}" stroke="#d62728" stroke-dasharray="4 3"/>'
                    f'<text x="{x(day) + 3:.1f}" y="{36 + 12 * (changes % 3)}" font-size="11" fill="#d62728">'
                    f"{html.escape(model)}</text>"
                )
                previous, changes = model, changes + 1
            parts.append(
                f'<circle cx="{x(day):.1f}" cy="{y(value):.1f}" r="3" fill="#1f77b4"><title>{day} '
                f"{html.escape(model)}: {value:.4f}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


def last_selection(runs: list[dict[str, Any]]) -> tuple[dt.date, dict[str, Any]] | None:
    """The newest run whose record holds a model selection with its candidates."""
    for run in reversed(runs):
        selection = run.get("selection") or {}
        if selection.get("candidates"):
            return run["run_date"], selection
    return None


def selection_table(runs: list[dict[str, Any]]) -> str:
    """The last selection: each candidate's score on the validation day, time and status; the winner marked."""
    found = last_selection(runs)
    if found is None:
        return "<p>No model selection recorded yet (it runs on full retrains with model = auto).</p>"
    day, selection = found
    rows = []
    for candidate in selection["candidates"]:
        winner = candidate.get("name") == selection.get("winner")
        score = candidate.get("score")
        seconds = candidate.get("train_seconds")
        cells = (
            candidate.get("name", ""),
            candidate.get("status", ""),
            f"{score:.4f}" if isinstance(score, (int, float)) else "",
            f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "",
            candidate.get("best_epoch") or "",
            candidate.get("detail") or "",
        )
        row_class = ' class="winner"' if winner else ""
        rows.append(f"<tr{row_class}>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in cells) + "</tr>")
    caption = (
        f"run {day}: {html.escape(str(selection.get('winner')))} won on "
        f"{html.escape(str(selection.get('metric')))} of {html.escape(str(selection.get('validation_day')))}"
    )
    return (
        f'<table id="selection"><caption>{caption}</caption><tr><th>candidate</th><th>status</th>'
        f"<th>{html.escape(str(selection.get('metric')))}</th><th>train s</th><th>best epoch</th><th>detail</th>"
        f"</tr>{''.join(rows)}</table>"
    )


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
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}} .error{{color:#b00}}
tr.winner td{{font-weight:bold;background:#eef6ee}} caption{{text-align:left;padding:4px 0}}</style></head>
<body><h1>genrec</h1>{notice}
<h2>Served model</h2>{svg_served(runs)}
<h2>Last model selection</h2>{selection_table(runs)}
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
