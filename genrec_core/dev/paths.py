"""Where the project keeps its own files: the repository root and the ignored state folder."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """Ignored folder for local services and demo output (GENREC_STATE_DIR overrides)."""
    return Path(os.environ.get("GENREC_STATE_DIR", PROJECT_ROOT / ".state")).resolve()
