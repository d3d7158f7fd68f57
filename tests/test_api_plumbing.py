"""The HTTP plumbing's own answers (slotguard.api), where `make mutation` found a change no test
noticed: a request refused before routing is a whole proxy-integration result (API Gateway reads
each key of it, not only the status and the body)."""

from __future__ import annotations

import json
import uuid
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
        (
            '{"reason": "a\\u0000b"}',
            "application/json",
            422,
            {
                "code": "validation_error",
                "message": "the request body must not contain NUL (\\u0000) characters",
                "details": {
                    "errors": [
                        {
                            "loc": ["body"],
                            "msg": "the request body must not contain NUL (\\u0000) characters",
                            "type": "value_error",
                        }
                    ],
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


def test_a_json_body_sent_without_a_content_type_arrives_base64_encoded_and_books(
    booking_fn: ModuleType, org: Org
) -> None:
    # Given a booking sent with no Content-Type: API Gateway hands it over base64-encoded
    contact = str(uuid.uuid4())
    body = json.dumps({"contact_id": contact, "scheduled_at": "2031-03-04T10:00:00Z", "duration_minutes": 30})
    event = http_api_event("POST", "/appointments", headers={}, body=body, claims=org.member)
    assert event["isBase64Encoded"] is True
    # When it reaches the booking API
    answer = booking_fn.lambda_handler(event, LambdaContext())
    # Then it is read as the JSON it encodes, and booked
    assert answer["statusCode"] == 201, answer
    assert json.loads(answer["body"])["contact_id"] == contact


@pytest.mark.parametrize(
    "encoded", ["e3!0=", "e 30=", "e30=!!"], ids=["bang-inside", "space-inside", "bangs-after"]
)
def test_a_base64_body_that_is_not_base64_is_400_malformed(
    booking_fn: ModuleType, org: Org, encoded: str
) -> None:
    # Given an event flagged base64-encoded whose body holds characters base64 does not have (a
    # lenient decoder would drop them and read `e30=`, which is `{}`)
    event = http_api_event("POST", "/appointments", headers={}, body="{}", claims=org.member)
    event["body"] = encoded
    assert event["isBase64Encoded"] is True
    # When it reaches the booking API, Then it is refused as malformed, before any route runs
    answer = booking_fn.lambda_handler(event, LambdaContext())
    assert (answer["statusCode"], json.loads(answer["body"])) == (
        400,
        {
            "error": {
                "code": "malformed_json",
                "message": "the request body is not valid UTF-8 JSON",
                "details": {},
            }
        },
    )
