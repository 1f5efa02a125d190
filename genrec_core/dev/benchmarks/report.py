"""`genrec bench report`: the tables in bench/README.md and the plots in docs/, made from bench/results/ only.

Each table sits between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->`` in the README;
the report rewrites what is between the markers and nothing else, so hand edits there do not
survive (and a test fails when the committed README differs from what this would write).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genrec_core.dev.benchmarks.record import RESULTS_DIR, load_all
from genrec_core.dev.benchmarks.scale_report import draw_scale_plot, scale_section
from genrec_core.dev.paths import PROJECT_ROOT

README = PROJECT_ROOT / "bench" / "README.md"
DOCS = PROJECT_ROOT / "docs"

# Published figures the issues name, drawn beside ours (their protocol is not always ours: see `note`).
REFERENCES: dict[str, list[dict[str, Any]]] = {
    "ml-1m": [
        {"label": "EASE, ECIR 2022 study", "ndcg@20": 0.419, "note": "their split"},
        {"label": "CFGAN tuned, ECIR 2022 study", "ndcg@20": 0.380, "note": "their split"},
    ],
    "ml-100k": [
        {"label": "EASE, ECIR 2022 study", "ndcg@20": 0.437, "note": "their split"},
        {"label": "CFGAN tuned, ECIR 2022 study", "ndcg@20": 0.408, "note": "their split"},
    ],
}


def _provenance(record: dict[str, Any], name: str) -> str:
    commit = (record.get("commit") or "unknown")[:7]
    machine = record.get("machine") or {}
    where = f"{machine.get('cores', '?')} cores, {machine.get('memory_gb', '?')} GB"
    if machine.get("gpu"):
        where += f", {machine['gpu']}"
    note = f"; {record['source']}" if record.get("source") else ""
    return f"[{name}](results/{name}) · commit `{commit}` · {str(record.get('measured_at', '?'))[:10]} · {where}{note}"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


OBJECT_STORE = "object-store"  # `genrec bench publish --target object-store` (the Delta table): its own table


def _by_bench(records: list[tuple[str, dict[str, Any]]], bench: str) -> list[tuple[str, dict[str, Any]]]:
    if bench == "publish-table":
        return [(n, r) for n, r in records if r.get("bench") == "publish" and _target(r) == OBJECT_STORE]
    return [(name, r) for name, r in records if r.get("bench") == bench and _target(r) != OBJECT_STORE]


def _target(record: dict[str, Any]) -> str | None:
    result = record.get("result")
    return result.get("target") if isinstance(result, dict) else None


def _label(row: dict[str, Any]) -> str:
    """A quality row's name; the `auto` row names the model its selection served."""
    return f"{row['model']} → {row['winner']}" if row.get("winner") else str(row["model"])


def _references(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The published figures for a quality record's data set (a record of some models is named `<set>-<models>`)."""
    datasets = {row.get("dataset") for row in record["result"]} or {record["case"]}
    return REFERENCES.get(datasets.pop(), []) if len(datasets) == 1 else []


def _gan_curves(path: Path, title: str, row: dict[str, Any]) -> None:
    """A GAN's fit epoch by epoch: D's accuracy, G's adversarial loss and the validation NDCG@20."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("D accuracy (its own batches)", row["gan_curves"]["discriminator_accuracy"]),
        ("G adversarial loss  -log D(G)", row["gan_curves"]["generator_adversarial_loss"]),
        ("validation NDCG@20", row["valid_curve"]),
    ]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True, layout="constrained")
    for ax, (label, values) in zip(axes, panels):
        ax.plot(range(1, len(values) + 1), values, color="#4C72B0", linewidth=1)
        ax.set_ylabel(label, fontsize=8)
        if row.get("best_epoch"):
            ax.axvline(row["best_epoch"], linestyle="--", color="#C44E52", linewidth=1)
    axes[-1].set_xlabel(f"epoch (dashed: the best-validation epoch, {row.get('best_epoch')})")
    axes[0].set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def quality_section(records: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines: list[str] = []
    for name, record in _by_bench(records, "quality"):
        lines += [f"**{record['case']}** ({_provenance(record, name)})", ""]
        header = [
            "model",
            "N@20",
            "R@20",
            "N@10",
            "R@10",
            "P@10",
            "MAP@10",
            "cov@20",
            "train s",
            "to best s",
            "peak RSS MB",
        ]
        rows = []
        for row in record["result"]:
            m = row.get("metrics", {})
            rows.append(
                [
                    _label(row),
                    _fmt(m.get("ndcg@20")),
                    _fmt(m.get("recall@20")),
                    _fmt(m.get("ndcg@10")),
                    _fmt(m.get("recall@10")),
                    _fmt(m.get("precision@10")),
                    _fmt(m.get("map@10")),
                    _fmt(m.get("coverage@20"), 3),
                    _fmt(row.get("train_seconds"), 1),
                    _fmt(row.get("seconds_to_best"), 1),
                    _fmt(row.get("peak_rss_mb"), 0),
                ]
            )
        lines += _table(header, rows)
        for ref in _references(record):
            lines.append(f"- published: {ref['label']} N@20 {ref['ndcg@20']:.3f} ({ref['note']})")
        lines.append("")
    return lines


def nightly_section(records: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Per planted log: each night's served model, its lists against the best achievable and the references,
    and where the night's wall time went."""
    lines: list[str] = []
    for name, record in _by_bench(records, "nightly"):
        result = record["result"]
        log, k = result["log"], result["k"]
        chain = "first-order chain" in log.get("generator", "")
        lines += [
            f"**{log['users']:,} users × {log['items']:,} items × {log['events']:,} events, {log['days']} days, "
            f"k = {k}, settings: {result['settings']}"
            + (", a first-order chain: R = hit rate of each user's next item" if chain else "")
            + f"** ({_provenance(record, name)})",
            "",
        ]
        linear = "ease" if all("ease" in night for night in result["nights"]) else "sansa"
        references = [linear, "popularity", *(["transitions"] if chain else [])]
        header = ["night", "mode", "served", f"R@{k} / best", f"N@{k} / best", "mass / best"]
        header += [f"{r.upper() if r == linear else r} R / best" for r in references]
        header += ["wall s", "extract s", "train s", "evaluate s", "score s", "publish s"]
        rows = []
        for night in result["nights"]:
            stages = night["stage_seconds"]
            publish = stages.get("publish_object_store", 0.0) + stages.get("publish_postgres", 0.0)
            rows.append(
                [
                    night["run_date"],
                    night["mode"],
                    night["served_model"],
                    _fmt(night["published"][f"recall@{k}_ratio"], 3),
                    _fmt(night["published"][f"ndcg@{k}_ratio"], 3),
                    _fmt(night["published"]["captured_mass_ratio"], 3),
                    *(_fmt(night[r][f"recall@{k}_ratio"], 3) for r in references),
                    _fmt(night["wall_seconds"], 1),
                    *(_fmt(stages.get(stage), 1) for stage in ("extract", "train", "evaluate", "score")),
                    _fmt(publish, 1),
                ]
            )
        lines += [*_table(header, rows), ""]
    return lines


def _throughput_rows(
    records: list[tuple[str, dict[str, Any]]], bench: str, columns: list[tuple[str, Callable[[dict[str, Any]], Any]]]
) -> list[str]:
    rows, sources = [], []
    for name, record in _by_bench(records, bench):
        rows.append([record["case"], *(_fmt(get(record["result"]), 3) for _, get in columns)])
        sources.append(f"- {record['case']}: {_provenance(record, name)}")
    if not rows:
        return []
    return [*_table(["case", *(title for title, _ in columns)], rows), "", *sources, ""]


SCORING_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("pipeline users/s", lambda r: r.get("pipeline_users_per_s")),
    ("floor users/s", lambda r: r.get("floor_users_per_s")),
    ("ratio", lambda r: r.get("ratio")),
    ("peak RSS MB", lambda r: r.get("peak_rss_mb")),
]
PUBLISH_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("publish rows/s", lambda r: r.get("publish_rows_per_s")),
    ("CSV COPY floor rows/s", lambda r: r.get("copy_floor_rows_per_s")),
    ("ratio", lambda r: r.get("ratio_to_copy_floor")),
    ("binary COPY floor rows/s", lambda r: r.get("copy_floor_binary_rows_per_s")),
    ("ratio", lambda r: r.get("ratio_to_binary_copy_floor")),
    ("lookup p99 ms", lambda r: r.get("lookup_p99_ms")),
]
TABLE_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("Delta publish rows/s", lambda r: r.get("table_rows_per_s")),
    ("plain Parquet parts rows/s", lambda r: r.get("plain_parquet_rows_per_s")),
    ("ratio", lambda r: r.get("ratio_to_plain_parquet")),
    ("lookup ms: table", lambda r: r["reads"]["table"]["lookup_median_ms"]),
    ("lookup ms: 0.4 layout", lambda r: r["reads"]["manifest_layout"]["lookup_median_ms"]),
    ("date read s: table", lambda r: r["reads"]["table"]["full_read_s"]),
    ("date read s: 0.4 layout", lambda r: r["reads"]["manifest_layout"]["full_read_s"]),
]
EXTRACT_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("events", lambda r: r.get("events")),
    ("full events/s", lambda r: r.get("full_events_per_s")),
    ("floor events/s", lambda r: r.get("floor_events_per_s")),
    ("ratio to floor", lambda r: r.get("ratio")),
    ("incremental events/s", lambda r: r.get("incremental_events_per_s")),
    ("driver peak RSS MB", lambda r: r.get("driver_peak_rss_mb")),
]


def sections(records: list[tuple[str, dict[str, Any]]]) -> dict[str, list[str]]:
    """The README blocks, by marker name."""
    return {
        "quality": quality_section(records),
        "nightly": nightly_section(records),
        "scoring": _throughput_rows(records, "scoring", SCORING_COLUMNS),
        "publish": _throughput_rows(records, "publish", PUBLISH_COLUMNS),
        "publish_table": _throughput_rows(records, "publish-table", TABLE_COLUMNS),
        "extract": _throughput_rows(records, "extract", EXTRACT_COLUMNS),
        "scale": scale_section(records),
    }


def named_records(root: Path = RESULTS_DIR) -> list[tuple[str, dict[str, Any]]]:
    records = load_all(root)
    names = sorted(p.name for p in root.glob("*.json"))
    return list(zip(names, records))


def render_readme(text: str, blocks: dict[str, list[str]]) -> str:
    """`text` with every marked block replaced; a marker missing from the README is an error."""
    for name, lines in blocks.items():
        pattern = re.compile(rf"(<!-- report:{name} -->\n).*?(<!-- /report:{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"bench/README.md has no <!-- report:{name} --> ... <!-- /report:{name} --> block")
        body = "\n".join(lines).rstrip() + "\n" if lines else "(no saved result yet)\n"
        text = pattern.sub(_keep_markers(body), text)
    return text


def _keep_markers(body: str) -> Callable[[re.Match[str]], str]:
    return lambda match: match.group(1) + body + match.group(2)


Floors = list[tuple[str, list[float | None]]]  # (name, one value per bar or None), measured in the same run
FLOOR_COLORS = ("#C44E52", "#DD8452", "#937860")


def _bars(
    path: Path,
    title: str,
    unit: str,
    labels: list[str],
    values: list[float],
    floors: Floors | None = None,
    references: tuple[tuple[str, float], ...] = (),
) -> None:
    """Horizontal bars, each with its floors (same run) drawn as lines across it; references as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    legend_rows = len(floors or []) + len(references)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(labels) + 1.4 + 0.25 * legend_rows), layout="constrained")
    positions = list(range(len(labels)))
    ax.barh(positions, values, color="#4C72B0")
    floors = floors or []
    for (name, per_bar), color in zip(floors, FLOOR_COLORS):
        drawn = [(y, floor) for y, floor in zip(positions, per_bar) if floor is not None]
        for i, (y, floor) in enumerate(drawn):
            ax.plot([floor, floor], [y - 0.4, y + 0.4], color=color, linewidth=2.5, label=name if i == 0 else None)
    for (label, value), color in zip(references, ("#55A868", "#8172B2", "#CCB974")):
        ax.axvline(value, linestyle="--", color=color, linewidth=1.2, label=f"{label}: {value:.3f}")
    for y, value in zip(positions, values):
        text = f" {value:,.0f}" if value >= 1000 else f" {value:.4f}"
        ax.text(value, y, text, va="center", fontsize=8)
    ax.set_yticks(positions, labels)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    if max(values, default=0) >= 1000:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    if legend_rows:
        fig.legend(loc="outside lower center", fontsize=8, frameon=False)
    ax.margins(x=0.12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_plots(records: list[tuple[str, dict[str, Any]]], docs: Path = DOCS) -> list[Path]:
    """One PNG per quality data set and one per throughput benchmark; returns the files written."""
    written = []
    for _, record in _by_bench(records, "quality"):
        rows = [r for r in record["result"] if r.get("metrics", {}).get("ndcg@20") is not None]
        path = docs / f"bench-quality-{record['case']}.png"
        refs = tuple((f"{r['label']} ({r['note']})", r["ndcg@20"]) for r in _references(record))
        _bars(
            path,
            f"Test NDCG@20 by model, {record['case']} (commit {(record.get('commit') or '?')[:7]})",
            "NDCG@20",
            [_label(r) for r in rows],
            [r["metrics"]["ndcg@20"] for r in rows],
            [],
            refs,
        )
        written.append(path)
        for row in rows:  # a `+ease` row trained the same network as its plain row: one plot per network
            if row.get("gan_curves") and row.get("valid_curve") and "+" not in row["model"]:
                curves = docs / f"bench-curves-{row['dataset']}-{row['model']}.png"
                _gan_curves(curves, f"{row['model']} on {row['dataset']}, epoch by epoch", row)
                written.append(curves)
    throughput: list[tuple[str, str, str, str, list[tuple[str, str]]]] = [
        (
            "scoring",
            "Scoring: users/s against matmul + top-k",
            "users/s",
            "pipeline_users_per_s",
            [("floor: decoder matmul + top-k (same run)", "floor_users_per_s")],
        ),
        (
            "publish",
            "Postgres publish: rows/s against raw COPY",
            "rows/s",
            "publish_rows_per_s",
            [
                ("floor: raw CSV COPY (same run)", "copy_floor_rows_per_s"),
                ("floor: raw binary COPY (same run)", "copy_floor_binary_rows_per_s"),
            ],
        ),
        (
            "extract",
            "Spark extract: events/s against read + groupBy",
            "events/s",
            "full_events_per_s",
            [("floor: read + groupBy (same run)", "floor_events_per_s")],
        ),
    ]
    for bench, title, unit, value_key, floor_keys in throughput:
        chosen = _by_bench(records, bench)
        if not chosen:
            continue
        path = docs / f"bench-{bench}.png"
        floors = [(name, [r["result"].get(key) for _, r in chosen]) for name, key in floor_keys]
        _bars(path, title, unit, [r["case"] for _, r in chosen], [r["result"][value_key] for _, r in chosen], floors)
        written.append(path)
    return written + draw_scale_plot(records, docs)


def run(root: Path = RESULTS_DIR, readme: Path = README, docs: Path = DOCS) -> dict[str, Any]:
    records = named_records(root)
    readme.write_text(render_readme(readme.read_text(), sections(records)))
    plots = draw_plots(records, docs)
    return {"results": len(records), "readme": str(readme), "plots": [str(p) for p in plots]}
