"""What a stage costs: its wall seconds and the peak resident memory of this process and its children.

The process's own peak comes from the kernel's high-water mark (VmHWM), reset when the stage
starts (``/proc/self/clear_refs``); where that reset is not allowed, or for child processes
(Spark's JVM in local mode), a helper thread samples the resident size every `interval` seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
# The own-process peaks of metered blocks still running: a nested block resets the kernel's mark,
# so it first folds the mark so far into every enclosing block's peak.
_open_peaks: list[dict[str, int]] = []


@dataclass
class Reading:
    """Filled in when the metered block ends."""

    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # this process
    children_peak_rss_mb: float = 0.0  # the sum over its child processes, sampled


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _children_rss_bytes() -> int:
    try:
        import psutil

        total = 0
        for child in psutil.Process(os.getpid()).children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return total
    except Exception:  # psutil missing or /proc unreadable: report no children rather than fail a stage
        return 0


@contextmanager
def metered(interval: float = 0.25) -> Iterator[Reading]:
    """Measure the block: `with metered() as reading: ...`, then read `reading.seconds` and the peaks."""
    reading = Reading()
    mark_so_far = (_status_kb("VmHWM") or 0) * 1024
    for enclosing in _open_peaks:
        enclosing["self"] = max(enclosing["self"], mark_so_far)
    exact = _reset_high_water_mark() and _status_kb("VmHWM") is not None
    peaks = {"self": (_status_kb("VmRSS") or 0) * 1024, "children": _children_rss_bytes()}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            if not exact:
                peaks["self"] = max(peaks["self"], (_status_kb("VmRSS") or 0) * 1024)
            peaks["children"] = max(peaks["children"], _children_rss_bytes())

    sampler = threading.Thread(target=sample, name="genrec-meter", daemon=True)
    sampler.start()
    _open_peaks.append(peaks)
    started = time.perf_counter()
    try:
        yield reading
    finally:
        reading.seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        _open_peaks.remove(peaks)
        peaks["children"] = max(peaks["children"], _children_rss_bytes())
        current = (_status_kb("VmHWM") if exact else _status_kb("VmRSS")) or 0
        own = max(peaks["self"], current * 1024)
        reading.peak_rss_mb = own / 2**20
        reading.children_peak_rss_mb = peaks["children"] / 2**20
