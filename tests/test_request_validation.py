"""The single-pass request validation (slotguard/api/validation.py) hands every route exactly the
arguments Powertools' own validation would, and every request it does not cover, or that is
invalid, gets Powertools' own answer: the same requests through both, on every route of the
booking and the metrics APIs and the webhook receiver, give the same route arguments (captured
before the route runs) and the same answer."""

from __future__ import annotations

import base64
import json
import uuid
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)

from slotguard.api import validation
from slotguard.api.validation import SinglePassRequestValidation
from slotguard_local.events import LambdaContext, http_api_event
from slotguard_local.functions import load_function
from tests.webhook_support import Pipeline

ID = str(uuid.uuid4())
CLAIMS = {"sub": "someone", "org_id": str(uuid.uuid4()), "role": "admin"}
BOOK = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2030-01-07T10:00:00+02:00", "duration_minutes": 30}
JSON = {"content-type": "application/json"}


class _Captured(Exception):
    pass


def _capture(app: Any, next_middleware: Any) -> Any:
    """A global middleware (it runs after request validation, before the route): record the
    route's arguments and stop there, so no route touches the database. The body a route may
    read is the one Powertools would parse (the resolver hands it the object it parsed first)."""
    event = app.current_event
    if event.decoded_body:
        assert event.json_body == json.loads(event.decoded_body)
    raise _Captured(repr(sorted(app.context["_route_args"].items())))


def _run(module: ModuleType, middleware: Any, event: dict[str, Any]) -> tuple[Any, ...]:
    app = module.app
    app._request_validation_middleware = middleware
    for route in (*app._static_routes, *app._dynamic_routes):
        route._middleware_stack_built = False  # Powertools builds each route's stack once
    captured: list[str] = []
    app.exception_handler(_Captured)(lambda exc: captured.append(str(exc)) or _stop())
    out = app.resolve(json.loads(json.dumps(event)), LambdaContext())
    return tuple(captured), out["statusCode"], out.get("body"), out.get("headers")


def _stop() -> Any:
    from aws_lambda_powertools.event_handler import Response

    return Response(status_code=299, content_type="text/plain", body="captured")


def _event(method: str, path: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("claims", CLAIMS)
    return http_api_event(method, path, **kw)


def _booking_events() -> list[dict[str, Any]]:
    body = json.dumps(BOOK)
    events = [
        _event("POST", "/appointments", headers=JSON, body=body),
        _event("POST", "/appointments", headers={**JSON, "Idempotency-Key": "k-1"}, body=body),
        _event("POST", "/appointments", headers={**JSON, "idempotency-key": "a,b"}, body=body),
        _event("POST", "/appointments", headers={**JSON, "idempotency-key": ""}, body=body),
        _event("POST", "/appointments", headers={**JSON, "idempotency-key": "x" * 256}, body=body),
        _event(
            "POST", "/appointments", headers={"content-type": "application/json; charset=utf-8"}, body=body
        ),
        _event("POST", "/appointments", headers={"content-type": "Application/JSON"}, body=body),
        _event("POST", "/appointments", headers={}, body=body),
        _event("POST", "/appointments", headers=JSON),
        _event("POST", "/appointments", headers=JSON, body=json.dumps({**BOOK, "duration_minutes": "30"})),
        _event("POST", "/appointments", headers=JSON, body=json.dumps({**BOOK, "duration_minutes": 30.0})),
        _event("POST", "/appointments", headers=JSON, body=json.dumps({**BOOK, "extra": 1})),
        _event("POST", "/appointments", headers=JSON, body=json.dumps({**BOOK, "metadata": {"a": [1, "x"]}})),
        _event("POST", "/appointments", headers=JSON, body=json.dumps({"contact_id": "nope"})),
        _event("POST", "/appointments", headers=JSON, body="{}"),
        _event("GET", "/appointments"),
        _event("GET", "/appointments", query={"from": "2030-01-07T10:00:00Z", "to": "2030-01-08T10:00:00Z"}),
        _event("GET", "/appointments", query={"status": "scheduled", "limit": "7", "resource_id": ID}),
        _event("GET", "/appointments", query={"status": "scheduled,cancelled"}),
        _event("GET", "/appointments", query="status=scheduled&status=cancelled"),
        _event("GET", "/appointments", query={"limit": "0"}),
        _event("GET", "/appointments", query={"limit": "7.0"}),
        _event("GET", "/appointments", query={"cursor": "12." + "0" * 32}),
        _event("GET", "/appointments", query={"unknown": "1"}),
        _event("GET", f"/appointments/{ID}"),
        _event("GET", f"/appointments/{ID.upper()}"),
        _event("GET", "/appointments/not-a-uuid"),
        _event("GET", f"/appointments/{ID}/history"),
        _event("POST", f"/appointments/{ID}/cancel", headers=JSON),
        _event("POST", f"/appointments/{ID}/cancel", headers=JSON, body='{"reason": "moved"}'),
        _event("POST", f"/appointments/{ID}/cancel", headers=JSON, body='{"reason": 5}'),
        _event("POST", f"/appointments/{ID}/cancel", headers={"content-type": "text/plain"}),
        _event(
            "POST",
            f"/appointments/{ID}/cancel",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        _event(
            "POST",
            f"/appointments/{ID}/reschedule",
            headers=JSON,
            body='{"scheduled_at": "2030-01-07T11:00:00Z"}',
        ),
        _event("POST", f"/appointments/{ID}/reschedule", headers=JSON, body="{}"),
        _event(
            "GET", "/availability/check", query={"start": "2030-01-07T10:00:00Z", "duration_minutes": "30"}
        ),
        _event("GET", "/availability/check", query={"start": "2030-01-07T10:00:00Z"}),
        _event(
            "GET",
            "/availability/slots",
            query={
                "from": "2030-01-07T10:00:00Z",
                "to": "2030-01-08T10:00:00Z",
                "duration_minutes": "30",
                "step_minutes": "15",
            },
        ),
        _event(
            "GET",
            "/availability/slots",
            query={"from": "2030-01-07T10:00:00Z", "to": "x", "duration_minutes": "1"},
        ),
        _event("DELETE", "/appointments"),
    ]
    encoded = _event("POST", "/appointments", headers=JSON, body=body)
    encoded["body"], encoded["isBase64Encoded"] = base64.b64encode(body.encode()).decode(), True
    return [*events, encoded]


def _metrics_events() -> list[dict[str, Any]]:
    return [
        _event("GET", "/webhook-metrics/queue-health"),
        _event("GET", "/webhook-metrics/delivery-stats", query={"range": "7d"}),
        _event("GET", "/webhook-metrics/delivery-stats", query={"range": "2d"}),
        _event("GET", "/webhook-metrics/recent-failures", query={"limit": "100"}),
        _event("GET", "/webhook-metrics/recent-failures", query={"limit": "101"}),
        _event("GET", "/webhook-metrics/dead-letter-queue"),
        _event("POST", "/webhook-metrics/dead-letter-queue/redrive", headers=JSON),
        _event(
            "POST", "/webhook-metrics/dead-letter-queue/redrive", headers=JSON, body='{"job_ids": ["a", "b"]}'
        ),
        _event("POST", "/webhook-metrics/dead-letter-queue/redrive", headers=JSON, body='{"job_ids": "a"}'),
        _event("GET", "/webhook-metrics/processing-time", query={"range": "1h"}),
    ]


def _receiver_events() -> list[dict[str, Any]]:
    return [
        _event("POST", f"/webhooks/{ID}", headers={"content-type": "text/plain"}, body="x", claims=None),
        _event("POST", "/webhooks/a,b", body="{}", claims=None),
    ]


# The requests (by their place in the lists above) that are valid but not simple: a
# header, query or path value holding a comma (Powertools splits and joins those), a form body.
NOT_SIMPLE = {"booking": {2, 32}, "metrics": set(), "webhook_receiver": {1}}


@pytest.mark.parametrize(
    ("function", "events"),
    [("booking", _booking_events), ("metrics", _metrics_events), ("webhook_receiver", _receiver_events)],
)
def test_single_pass_validation_gives_each_route_what_powertools_gives_it(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, function: str, events: Any
) -> None:
    # Given a fresh container of the function, with its usual validation (the single pass)
    module = load_function(function)
    module.app.use(middlewares=[_capture])
    assert isinstance(module.app._request_validation_middleware, SinglePassRequestValidation)
    fast, powertools = SinglePassRequestValidation(), OpenAPIRequestValidationMiddleware()
    single_pass: list[bool] = []
    values = validation._Plan.values

    def counted(plan: Any, app: Any) -> Any:
        out = values(plan, app)
        single_pass.append(out is not None)
        return out

    monkeypatch.setattr(validation._Plan, "values", counted)
    reached = 0
    for index, event in enumerate(events()):
        # When the same request goes through each validation
        single_pass.clear()
        ours, theirs = _run(module, fast, event), _run(module, powertools, event)
        # Then the route gets the same arguments, or the caller the same answer
        where = (index, event["routeKey"], event.get("body"), event["rawQueryString"])
        assert ours == theirs, where
        # And a simple, valid request reached its route through the single pass; an invalid one
        # (Powertools' 4xx) or one that is not simple went through Powertools' own validation
        refused = theirs[1] in (400, 415, 422)
        assert single_pass == [not refused and index not in NOT_SIMPLE[function]], where
        reached += bool(ours[0])
    # And requests did reach their routes (the lists are not all refused by both)
    assert reached


def test_route_arguments_are_formatted_only_when_powertools_logs_them() -> None:
    # Powertools logs a route's arguments at DEBUG with an f-string, at every level
    from aws_lambda_powertools.event_handler import api_gateway

    args = validation._RouteArgs(body={"a": 1}, idempotency_key=None)
    assert repr(args) == "{...}" and f"{args}" == "{...}"
    level = api_gateway.logger.level
    api_gateway.logger.setLevel("DEBUG")
    try:
        assert repr(args) == repr({"body": {"a": 1}, "idempotency_key": None})
    finally:
        api_gateway.logger.setLevel(level)
    assert args == {"body": {"a": 1}, "idempotency_key": None}
