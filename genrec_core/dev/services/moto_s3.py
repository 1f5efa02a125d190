"""moto's S3 server on loopback, in its own process: a real S3 HTTP endpoint for tests and benchmarks.

Its own process, as MinIO or AWS would be: delta-rs holds the GIL through some of its requests, which a
server thread in the calling process could not answer.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from genrec_core.dev.services.local_postgres import free_port
from genrec_core.errors import ServiceError


@contextmanager
def moto_s3(start_timeout_s: float = 60.0) -> Iterator[str]:
    """Start the server; yield its endpoint URL (http://127.0.0.1:<port>); stop it on exit."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise ServiceError(f"moto's S3 server did not start on port {port}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
