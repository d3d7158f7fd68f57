"""Every answer is bounded (issue 19 item 1): Lambda refuses a response payload over 6 MB (API
Gateway then answers 500), so every list a route returns has a bound, with its count and a
`truncated` flag (or a cursor to the rest), and the local front door refuses a larger answer
as Lambda does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from slotguard.topology import Route
from slotguard_local.frontdoor import LAMBDA_MAX_RESPONSE_BYTES, FrontDoor, JwtAuthorizer, JwtSettings


class Answering:
    """A function that answers what it is given (the front door's Function protocol)."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result

    def invoke(self, event: dict[str, Any]) -> Any:
        return self.result


def proxy_result(body: str) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": body,
        "isBase64Encoded": False,
    }


def lambda_payload_bytes(result: dict[str, Any]) -> int:
    """The size Lambda's limit applies to: the response as the Python 3.12+ runtime serializes it
    (awslambdaric's marshaller: json, ensure_ascii=False, default separators)."""
    return len(json.dumps(result, ensure_ascii=False).encode())


def padded(target: int, char: str = "a") -> dict[str, Any]:
    """A proxy result whose Lambda payload is exactly `target` bytes."""
    result = proxy_result("")
    base = lambda_payload_bytes(result)
    per_char = lambda_payload_bytes(proxy_result(char)) - base
    result["body"] = char * ((target - base) // per_char)
    assert lambda_payload_bytes(result) == target
    return result


@pytest.fixture
def door() -> Any:
    def make(result: dict[str, Any]) -> FrontDoor:
        route = Route("GET", "/big", "big", authorized=False)
        authorizer = JwtAuthorizer(JwtSettings("s" * 32, "i", "a"))
        return FrontDoor((route,), {"big": Answering(result)}, authorizer, b"{}", port=0)

    made: list[FrontDoor] = []
    yield lambda result: made.append(make(result)) or made[-1]
    for d in made:
        d._server.server_close()


def test_lambdas_limit_is_its_documented_six_mb() -> None:
    # (6 MB as Lambda counts it: 6 MiB and 100 bytes, the size its runtime API refuses beyond)
    assert LAMBDA_MAX_RESPONSE_BYTES == 6 * 1024 * 1024 + 100


def test_the_front_door_passes_an_answer_of_exactly_lambdas_limit(door: Any) -> None:
    # Given a function whose answer is exactly as large as Lambda accepts
    front = door(padded(LAMBDA_MAX_RESPONSE_BYTES))
    # When it is requested
    answer = front.handle("GET", "/big", {}, b"", "127.0.0.1")
    # Then it is delivered
    assert answer.status == 200
    assert len(answer.body) > 6_000_000


@pytest.mark.parametrize("char", ["a", '"'], ids=["plain", "escaped-by-the-runtime"])
def test_the_front_door_answers_500_for_a_function_answer_over_lambdas_limit(door: Any, char: str) -> None:
    # Given a function whose answer is one byte over Lambda's limit as its runtime serializes it
    # (a body of quotes is under the limit as HTTP bytes, over it once escaped in the payload)
    result = (
        padded(LAMBDA_MAX_RESPONSE_BYTES + 1) if char == "a" else padded(LAMBDA_MAX_RESPONSE_BYTES + 2, char)
    )
    front = door(result)
    # When it is requested
    answer = front.handle("GET", "/big", {}, b"", "127.0.0.1")
    # Then the gateway answers API Gateway's 500, as when Lambda refuses the payload, naming the function
    assert answer.status == 500
    assert json.loads(answer.body) == {"message": "Internal Server Error"}
    assert answer.function == "big"
