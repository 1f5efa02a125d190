"""A stage's cost: wall seconds and the peak memory of the process and of its children, nested blocks included."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from genrec_core.meter import metered


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_the_peak_of_a_block_includes_memory_freed_before_it_ends():
    with metered() as reading:
        before = _rss_mb()
        block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        del block
        time.sleep(0.05)
    assert reading.peak_rss_mb >= before + 280
    assert _rss_mb() < reading.peak_rss_mb - 200  # it was freed: only the peak remembers it
    assert 0.05 <= reading.seconds < 60


def test_an_inner_block_does_not_hide_the_outer_blocks_earlier_peak():
    with metered() as outer:
        block = np.ones(250 * 2**20 // 8)
        base = _rss_mb()
        del block
        with metered() as inner:  # resets the kernel's high-water mark: the outer block must keep its own
            small = np.ones(20 * 2**20 // 8)
            del small
    assert outer.peak_rss_mb >= base - 5 and outer.peak_rss_mb >= inner.peak_rss_mb
    assert inner.peak_rss_mb < base - 150


def test_child_processes_are_counted_apart():
    script = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    with metered(interval=0.1) as reading:
        own = _rss_mb()
        subprocess.run([sys.executable, "-c", script], check=True)
    assert reading.children_peak_rss_mb >= 190
    assert reading.peak_rss_mb < own + 100  # the child's 200 MB are not counted as this process's
