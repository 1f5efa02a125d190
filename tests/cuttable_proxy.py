"""A TCP proxy on loopback, in its own process: `python -m tests.cuttable_proxy LISTEN TARGET`.

SIGUSR1 cuts it (every connection dropped, new ones refused), SIGUSR2 restores it. Its own process,
because a client library that holds the GIL through a request (delta-rs does) would stall a proxy thread.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading


class Proxy:
    def __init__(self, port: int, target_port: int) -> None:
        self.port, self.target_port = port, target_port
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def restore(self) -> None:
        with self._lock:
            if self._listener is None:
                self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
                threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def main() -> None:
    proxy = Proxy(int(sys.argv[1]), int(sys.argv[2]))
    signal.signal(signal.SIGUSR1, lambda *_: proxy.cut())
    signal.signal(signal.SIGUSR2, lambda *_: proxy.restore())
    proxy.restore()
    print("ready", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
