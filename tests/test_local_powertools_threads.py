"""The local stack resolves requests of several function containers at once, in threads of one
process: each must see its own event (Powertools keeps it on a class)."""

from __future__ import annotations

import threading
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from slotguard_local.events import LambdaContext, http_api_event
from slotguard_local.powertools_threads import install


def test_two_containers_resolving_at_once_each_see_their_own_event() -> None:
    # Given the local stack's per-thread event slots and two containers' resolvers
    install()
    first_resolved, second_done = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def container(name: str, wait: bool) -> APIGatewayHttpResolver:
        app = APIGatewayHttpResolver()

        @app.get("/who/<who>")
        def who(who: str) -> dict[str, Any]:
            if wait:
                first_resolved.set()
                second_done.wait(10)  # the other request is resolved meanwhile
            seen[name] = (who, app.current_event.path)
            return {}

        return app

    a, b = container("a", wait=True), container("b", wait=False)

    def run_a() -> None:
        a.resolve(http_api_event("GET", "/who/a"), LambdaContext())

    # When the second request is resolved while the first is in its handler
    thread = threading.Thread(target=run_a)
    thread.start()
    first_resolved.wait(10)
    b.resolve(http_api_event("GET", "/who/b"), LambdaContext())
    second_done.set()
    thread.join(10)
    # Then each handler read its own request's event
    assert seen == {"a": ("a", "/who/a"), "b": ("b", "/who/b")}
