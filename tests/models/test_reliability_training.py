"""Training faults: the checkpoint disk refuses writes (a real OS limit in a child process), then the
retry with room completes and matches an uninterrupted run."""

from __future__ import annotations

import multiprocessing as mp

import pytest
import torch

from genrec_core.models.base import FitOptions
from genrec_core.models.mult_vae import MultVAEConfig
from genrec_core.models.mult_vae.model import MultVAE
from tests.support import two_block_interactions

pytestmark = pytest.mark.reliability
CONFIG = MultVAEConfig(epochs=4, hidden_dim=16, latent_dim=4, batch_size=20, total_anneal_steps=20)


def _fit_with_a_file_size_limit(checkpoints: str, limit: int, results: mp.Queue) -> None:
    import resource

    # Files above `limit` bytes cannot be written (EFBIG), as on a full disk; Python ignores SIGXFSZ.
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        MultVAE(CONFIG).fit(two_block_interactions(), FitOptions(seed=1, threads=1, checkpoint_dir=checkpoints))
        results.put("finished")
    except OSError as exc:
        results.put(str(exc))


def test_checkpoint_write_failure_stops_loudly_and_the_retry_recovers(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=_fit_with_a_file_size_limit, args=(str(checkpoints), 4096, results))
    child.start()
    message = results.get(timeout=300)
    child.join()
    assert "cannot write the training checkpoint" in message and str(checkpoints) in message, message
    assert "after epoch 1" in message
    assert not list(checkpoints.glob("*.tmp"))  # no half-written file left behind

    retried = MultVAE(CONFIG).fit(
        two_block_interactions(), FitOptions(seed=1, threads=1, checkpoint_dir=str(checkpoints))
    )
    plain = MultVAE(CONFIG).fit(two_block_interactions(), FitOptions(seed=1, threads=1))
    for name, tensor in plain.state().items():
        assert torch.equal(tensor, retried.state()[name]), name


def _mount_tmpfs(path, size: str) -> bool:
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


def test_a_really_full_checkpoint_disk_stops_loudly_and_the_retry_recovers(tmp_path):
    """A real ENOSPC: the checkpoint directory is a tmpfs smaller than one checkpoint (needs root to mount)."""
    import errno
    import subprocess

    disk = tmp_path / "small-disk"
    if not _mount_tmpfs(disk, "8k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the RLIMIT_FSIZE test covers the write failure")
    try:
        with pytest.raises(OSError) as raised:
            MultVAE(CONFIG).fit(two_block_interactions(), FitOptions(seed=1, threads=1, checkpoint_dir=str(disk)))
        assert raised.value.errno == errno.ENOSPC
        assert f"cannot write the training checkpoint {disk}" in str(raised.value)
        assert list(disk.iterdir()) == []  # the partial temp file is gone
        subprocess.run(["mount", "-o", "remount,size=1m", str(disk)], check=True)  # space freed
        retried = MultVAE(CONFIG).fit(two_block_interactions(), FitOptions(seed=1, threads=1, checkpoint_dir=str(disk)))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
    plain = MultVAE(CONFIG).fit(two_block_interactions(), FitOptions(seed=1, threads=1))
    for name, tensor in plain.state().items():
        assert torch.equal(tensor, retried.state()[name]), name
