"""The HTTP plumbing's own answers (slotguard.api), where `make mutation` found a change no test
noticed: a request refused before routing is a whole proxy-integration result (API Gateway reads
each key of it, not only the status and the body)."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from slotguard_local.events import LambdaContext, http_api_event
from tests.conftest import Org


def raw_answer(fn: ModuleType, org: Org, body: str, content_type: str) -> dict[str, Any]:
    event = http_api_event(
        "POST", "/appointments", headers={"content-type": content_type}, body=body, claims=org.member
    )
    return dict(fn.lambda_handler(event, LambdaContext()))


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (
            '{"contact_id": "x"}',
            "text/plain",
            415,
            {
                "code": "unsupported_media_type",
                "message": "send the body as Content-Type: application/json",
                "details": {},
            },
        ),
        (
            "{not json",
            "application/json",
            400,
            {"code": "malformed_json", "message": "the request body is not valid UTF-8 JSON", "details": {}},
        ),
        (
            "[1, 2]",
            "application/json",
            422,
            {
                "code": "validation_error",
                "message": "the request body must be a JSON object",
                "details": {
                    "errors": [{"loc": ["body"], "msg": "must be a JSON object", "type": "object_type"}],
                    "error_count": 1,
                    "truncated": False,
                },
            },
        ),
    ],
)
def test_a_body_refused_before_routing_is_a_whole_proxy_result(
    booking_fn: ModuleType, org: Org, body: str, content_type: str, status: int, error: dict[str, Any]
) -> None:
    # Given the booking API
    # When a body it refuses before any route runs arrives (another media type, not JSON, not
    # an object)
    answer = raw_answer(booking_fn, org, body, content_type)
    # Then the proxy result has every key API Gateway reads, the body as text (not base64: API
    # Gateway would decode it), served as JSON, and the error envelope with its details
    assert set(answer) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert answer["statusCode"] == status
    assert answer["isBase64Encoded"] is False
    assert answer["headers"] == {"Content-Type": "application/json"}
    assert json.loads(answer["body"]) == {"error": error}
