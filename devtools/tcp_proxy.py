"""A loopback TCP proxy owned by a test, to cut connections as a network would.

Clients connect to ``127.0.0.1:port``; each connection is forwarded to the target.
``cut()`` drops every connection at once, both sides, as a network blip or a failover
looks to a client: the server sees its client vanish, the client a reset. New
connections are forwarded again right after.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.cuts = 0
        self.connections_cut = 0

    def start(self) -> TcpProxy:
        threading.Thread(target=self._accept, name="tcp-proxy-accept", daemon=True).start()
        return self

    def cut(self) -> int:
        """Drop every connection now; returns how many there were."""
        with self._lock:
            pairs, self._pairs = self._pairs, set()
            self.cuts += 1
            self.connections_cut += len(pairs)
        for pair in pairs:
            _close(pair)
        return len(pairs)

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()  # the server is down: the client sees it refuse
                continue
            upstream.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        other = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in pair:
                selector.register(sock, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in selector.select():
                        data = key.fileobj.recv(65536)
                        if not data:
                            raise ConnectionError("closed")
                        other[key.fileobj].sendall(data)
            except (OSError, ValueError, ConnectionError):
                pass
        with self._lock:
            self._pairs.discard(pair)
        _close(pair)


def _close(pair: tuple[socket.socket, socket.socket]) -> None:
    for sock in pair:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
