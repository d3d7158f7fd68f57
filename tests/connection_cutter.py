"""A TCP proxy in front of PostgreSQL that can lose one statement's answer: it passes the
statement to the server, lets the server run it, and closes both sides when the server's answer
arrives, forwarding none of it. What a client sees when its connection is cut while a statement is
in flight (a failover, RDS Proxy closing a connection, a network fault) in the worst case: the
statement ran (a write committed), its answer never came."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

# PostgreSQL's frontend messages that start a statement: a simple Query, or the extended protocol's
# Parse (psycopg sends Parse, Bind, Describe, Execute and Sync in one write)
STATEMENT_STARTS = (ord("Q"), ord("P"))


def accept_in_background(on_client: Callable[[socket.socket], None]) -> socket.socket:
    """A listener on a free loopback port whose thread hands each accepted connection to
    `on_client`, until the listener is shut down."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            on_client(client)

    threading.Thread(target=accept, daemon=True).start()
    return listener


@dataclass
class ConnectionCutter:
    target: tuple[str, int] | str  # (host, port), or a Unix socket's path
    connections: int = 0
    cuts: int = 0
    _armed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listener: socket.socket | None = None
    _sockets: list[socket.socket] = field(default_factory=list)

    @classmethod
    def before(cls, url: str) -> ConnectionCutter:
        info = psycopg.conninfo.conninfo_to_dict(url)
        host, port = str(info.get("host") or "localhost"), int(info.get("port") or 5432)
        return cls(f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)).start()

    def url(self, url: str) -> str:
        """`url` through this proxy."""
        assert self._listener is not None
        # (in clear: the proxy reads each message's type, which TLS would hide)
        return psycopg.conninfo.make_conninfo(
            url, host="127.0.0.1", port=self._listener.getsockname()[1], sslmode="disable"
        )

    def arm(self) -> None:
        """The next statement any connection sends runs, and its answer is lost with the connection."""
        with self._lock:
            self._armed = True

    def start(self) -> ConnectionCutter:
        self._listener = accept_in_background(self._connect)
        return self

    def stop(self) -> None:
        for sock in [self._listener, *self._sockets]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
                with contextlib.suppress(OSError):
                    sock.close()

    def _connect(self, client: socket.socket) -> None:
        if isinstance(self.target, str):
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.target)
        else:
            server = socket.create_connection(self.target)
        self._sockets += [client, server]
        with self._lock:
            self.connections += 1
        cut = threading.Event()
        threading.Thread(target=self._client_to_server, args=(client, server, cut), daemon=True).start()
        threading.Thread(target=self._server_to_client, args=(server, client, cut), daemon=True).start()

    def _client_to_server(self, client: socket.socket, server: socket.socket, cut: threading.Event) -> None:
        while data := self._recv(client):
            if data[0] in STATEMENT_STARTS:
                with self._lock:
                    if self._armed:
                        self._armed = False
                        cut.set()
            if not self._send(server, data):
                break
        self._close(client, server)

    def _server_to_client(self, server: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        while data := self._recv(server):
            if cut.is_set():  # the statement ran; its answer is lost with the connection
                with self._lock:
                    self.cuts += 1
                break
            if not self._send(client, data):
                break
        self._close(client, server)

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    @staticmethod
    def _send(sock: socket.socket, data: bytes) -> bool:
        try:
            sock.sendall(data)
        except OSError:
            return False
        return True

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
