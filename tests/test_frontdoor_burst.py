"""The local front door takes a burst of clients connecting at once (its listen backlog)."""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from slotguard_local.frontdoor import FrontDoor, JwtAuthorizer, JwtSettings

CLIENTS = 500


@pytest.fixture
def door() -> Iterator[FrontDoor]:
    d = FrontDoor((), {}, JwtAuthorizer(JwtSettings("s" * 32, "iss", "aud")), b"{}", port=0)
    d.start()
    yield d
    d.stop()


def test_500_clients_connecting_at_once_are_all_answered(door: FrontDoor) -> None:
    # Given 500 clients that open their connections at the same moment
    host, port = door.url.removeprefix("http://").split(":")
    start = threading.Barrier(CLIENTS, timeout=60)
    outcomes: Counter[str] = Counter()
    guard = threading.Lock()

    def client() -> None:
        try:
            start.wait()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            with contextlib.closing(conn):
                conn.request("GET", "/openapi.json")
                outcome = str(conn.getresponse().status)
        except OSError as exc:  # ConnectionResetError, ConnectionRefusedError, timeouts
            outcome = type(exc).__name__
        with guard:
            outcomes[outcome] += 1

    # When each sends one request
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every one is answered: no connection reset or refused by a full listen backlog
    assert outcomes == {"200": CLIENTS}
