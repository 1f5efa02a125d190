"""Benchmark results as files: what a `genrec bench ... --save` run measured, where, when and at which commit.

Each saved result is ``bench/results/<bench>-<case>.json``: the benchmark's own JSON under
``result`` (a list for the quality benchmark, one object per model) beside its provenance.
`genrec bench report` (report.py) builds the tables and plots from these files only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from genrec_core.dev.paths import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
LIBRARIES = ("torch", "pyspark", "numpy", "scipy", "pyarrow", "psycopg2-binary", "apache-airflow")


def result_path(bench: str, case: str, root: Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", case)
    return (root or RESULTS_DIR) / f"{bench}-{safe}.json"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None
    return None


def _gpu() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # no torch or no driver: no GPU to report
        return None


def _postgres_version() -> str | None:
    from genrec_core.dev.services.local_postgres import find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        return None
    try:
        out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance(argv: list[str]) -> dict[str, Any]:
    """The commit, date, machine, library versions and exact command of a run happening now."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["postgres_server"] = _postgres_version()
    # the results folder itself does not count: saving one result must not mark the next run dirty
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "commit_dirty": bool(dirty) if dirty is not None else None,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": _memory_gb(),
            "gpu": _gpu(),
            "processor": platform.machine(),
            "python": platform.python_version(),
        },
        "versions": versions,
        "command": shlex.join(["genrec", *argv]),
    }


def save(
    bench: str,
    case: str,
    result: Any,
    argv: list[str] | None = None,
    root: Path | None = None,
    measured: dict[str, Any] | None = None,
) -> Path:
    """Write one run's result with its provenance (`measured`: taken when the run started; else now)."""
    origin = measured if measured is not None else provenance(sys.argv[1:] if argv is None else argv)
    record = {"bench": bench, "case": case, **origin, "result": result}
    path = result_path(bench, case, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path


def load_all(root: Path | None = None) -> list[dict[str, Any]]:
    """Every saved result, ordered by file name."""
    return [json.loads(path.read_text()) for path in sorted((root or RESULTS_DIR).glob("*.json"))]
