"""The scale benchmark's table (bench/README.md) and its plot of cost against catalogue size (docs/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Records = list[tuple[str, dict[str, Any]]]
K = 20


def _cases(records: Records) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(file name, record, case) for every saved case, smallest catalogue first."""
    found = [
        (name, record, case)
        for name, record in records
        if record["bench"] == "scale"
        for case in record["result"]["cases"]
    ]
    return sorted(found, key=lambda entry: (entry[2]["items"], entry[0]))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _softmax(row: dict[str, Any]) -> str:
    if "sampled_softmax" not in row:
        return "–"
    return "sampled" if row["sampled_softmax"] else "full"


def _label(row: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> str:
    """The row's label, with the run's `--settings` for its model (e.g. `sansa [weights_per_item=50]`)."""
    changed = overrides.get(row["model"], {})
    return row["label"] + (f" [{', '.join(f'{k}={v}' for k, v in changed.items())}]" if changed else "")


def _row(case: dict[str, Any], row: dict[str, Any], record: dict[str, Any]) -> list[str]:
    label = _label(row, record["result"].get("settings") or {})
    commit = (record.get("commit") or "?")[:7]
    if "error" in row:
        return [f"{case['items']:,}", label, f"failed: {row['error']}", *[""] * 10, commit]
    best = (
        f"{_fmt(row.get('seconds_to_best'))} ({row['best_epoch']}/{row['epochs_run']})" if "best_epoch" in row else "–"
    )
    return [
        f"{case['items']:,}",
        label,
        _softmax(row),
        row.get("expert") or "–",
        _fmt(row.get("epoch_seconds")),
        best,
        _fmt(row["fit_seconds"]),
        _fmt(row["peak_rss_mb"]),
        _fmt(row["scoring_users_per_s"]),
        _fmt(row["scoring_vs_floor"]),
        _fmt(row[f"recall@{K}"], 4),
        _fmt(row["recall_vs_best"]),
        _fmt(row[f"ndcg@{K}"], 4),
        commit,
    ]


def _checks(case: dict[str, Any]) -> list[str]:
    checks, lines = case["checks"], []
    if "sampled_vs_full" in checks:
        c = checks["sampled_vs_full"]
        lines.append(
            f"- {case['items']:,} items, sampled vs full softmax (Mult-VAE): recall@{K} ratio "
            f"{c['recall_ratio']:.3f}, epoch seconds ratio {c['epoch_seconds_ratio']:.3f}"
        )
    if "sansa_vs_ease" in checks:
        lines.append(
            f"- {case['items']:,} items, SANSA vs EASE: NDCG@{K} ratio {checks['sansa_vs_ease']['ndcg_ratio']:.3f}"
        )
    if "hybrid_vs_parts" in checks:
        c = checks["hybrid_vs_parts"]
        verdict = "beats both" if c["beats_both"] else "does not beat both"
        lines.append(
            f"- {case['items']:,} items, the hybrid vs its parts (recall@{K}): {c['hybrid']:.4f} vs network "
            f"{c['network']:.4f} and expert {c['expert']:.4f}: {verdict}"
        )
    return lines


def scale_section(records: Records) -> list[str]:
    """One table over every saved case, then the issue's comparisons and where each case came from."""
    cases = _cases(records)
    if not cases:
        return []
    header = [
        "items",
        "model",
        "softmax",
        "expert",
        "epoch s",
        "s to best (epoch)",
        "fit s",
        "peak RSS MB",
        "scoring users/s",
        "/ floor",
        f"R@{K}",
        "/ best",
        f"N@{K}",
        "commit",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes: list[str] = []
    for name, record, case in cases:
        lines += ["| " + " | ".join(_row(case, row, record)) + " |" for row in case["rows"]]
        notes += _checks(case)
        notes.append(
            f"- {case['items']:,} items: {case['users']:,} users, {case['fit_interactions']:,} fit interactions "
            f"({case['items_with_interactions']:,} items seen), best achievable R@{K} "
            f"{case['best_achievable'][f'recall@{K}']:.4f}, floor {_fmt(case['floor_users_per_s'])} users/s "
            f"(chunk {case['scoring_chunk']:,}); {name}, commit {(record.get('commit') or '?')[:7]}, "
            f"{(record.get('measured_at') or '?')[:10]}, {record['result']['epochs_cap']}-epoch cap, "
            f"patience {record['result']['patience']}"
        )
    return [*lines, "", *notes, ""]


def draw_scale_plot(records: Records, docs: Path) -> list[Path]:
    """docs/bench-scale.png: fit seconds, peak RSS and scoring users/s of each model against catalogue size."""
    cases = _cases(records)
    if not cases:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for _, _, case in cases:
        for row in case["rows"]:
            if "error" not in row:
                series.setdefault(row["label"], []).append((case["items"], row))
    panels = (
        ("fit_seconds", "fit seconds"),
        ("peak_rss_mb", "peak RSS MB"),
        ("scoring_users_per_s", "scoring users/s"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
    for ax, (key, title) in zip(axes, panels):
        for label, points in sorted(series.items()):
            points = sorted(points, key=lambda point: point[0])
            ax.plot([p[0] for p in points], [p[1][key] for p in points], marker="o", label=label)
        if key == "scoring_users_per_s":
            floor = sorted({(case["items"], case["floor_users_per_s"]) for _, _, case in cases})
            ax.plot([f[0] for f in floor], [f[1] for f in floor], "k--", label="floor: matmul + top-k")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("items in the catalogue")
        ax.set_title(title)
    axes[-1].legend(fontsize=7, frameon=False)
    path = docs / "bench-scale.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.suptitle("genrec bench scale: cost against catalogue size (planted logs)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
