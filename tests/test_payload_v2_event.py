"""The front door hands each function the event API Gateway's HTTP API sends a Lambda proxy
integration, payload format 2.0. The expected events here are written from AWS's documentation
(API Gateway developer guide, "Create AWS Lambda proxy integrations for HTTP APIs": the
format-2.0 example event and the list of differences from 1.0), not from the builder:

- top level: version "2.0", routeKey, rawPath, rawQueryString, cookies, headers,
  queryStringParameters, requestContext, body, pathParameters, isBase64Encoded; stageVariables
  only when the stage has some (ours has none); no multiValueHeaders /
  multiValueQueryStringParameters (1.0 fields);
- header names are lower case; duplicate headers are combined with commas; duplicate query
  parameters are combined with commas;
- every Cookie header of the request goes into `cookies` (one element a cookie), not headers;
- requestContext: accountId, apiId, domainName, domainPrefix (domainName's first label),
  http {method, path, protocol, sourceIp, userAgent}, requestId, routeKey, stage, time
  ("12/Mar/2020:19:03:58 +0000"), timeEpoch (milliseconds), and authorizer.jwt {claims, scopes}
  behind a JWT authorizer only;
- body absent when the request has none; a body whose Content-Type is not a text type (binary:
  application/octet-stream, image/png, a form post) arrives base64-encoded with isBase64Encoded
  true; a text type (text/*, JSON, XML, JavaScript) arrives as the text."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from slotguard.topology import Route
from slotguard_local.frontdoor import FrontDoor, JwtAuthorizer, JwtSettings

SECRET, ISSUER, AUDIENCE = "s" * 32, "https://issuer.example", "slotguard"


class Recording:
    """A function that keeps every event it is invoked with and answers 200."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": "{}"}


@pytest.fixture
def recorded() -> Iterator[tuple[FrontDoor, Recording]]:
    function = Recording()
    routes = (
        Route("POST", "/things/{thing_id}", "probe", authorized=True),
        Route("POST", "/open/{name}", "probe", authorized=False),
    )
    door = FrontDoor(
        routes, {"probe": function}, JwtAuthorizer(JwtSettings(SECRET, ISSUER, AUDIENCE)), b"{}", port=0
    )
    door.start()
    yield door, function
    door.stop()


def send(door: FrontDoor, head: list[str], body: bytes = b"") -> int:
    """Raw HTTP/1.1, byte for byte as written (duplicate headers stay duplicates)."""
    port = int(door.url.rsplit(":", 1)[1])
    request = (
        "\r\n".join([*head, f"Content-Length: {len(body)}", "Connection: close", "", ""]).encode() + body
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def token(claims: dict[str, Any]) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


def test_an_authorized_request_is_the_documented_payload_2_event(recorded: Any) -> None:
    door, function = recorded
    port = int(door.url.rsplit(":", 1)[1])
    bearer = token({"sub": "user-1", "org_id": "org-1", "role": "admin"})
    body = b'{"hello": "w\xc3\xb6rld"}'
    before_ms = int(time.time() * 1000)
    # When a client sends a request with duplicate headers (one differing in case), two Cookie
    # headers, duplicate query parameters and a JSON body
    status = send(
        door,
        [
            "POST /things/t-1?a=1&b=x%20y&a=2 HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            f"Authorization: Bearer {bearer}",
            "Content-Type: application/json",
            "User-Agent: agent/1.0",
            "X-Dup: one",
            "x-dup: two",
            "Cookie: c1=v1; c2=v2",
            "Cookie: c3=v3",
        ],
        body,
    )
    after_ms = int(time.time() * 1000)
    assert status == 200
    [event] = function.events
    # Then the event is the documented 2.0 event, field by field
    assert set(event) == {
        "version",
        "routeKey",
        "rawPath",
        "rawQueryString",
        "cookies",
        "headers",
        "queryStringParameters",
        "requestContext",
        "body",
        "pathParameters",
        "isBase64Encoded",
    }
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /things/{thing_id}"
    assert event["rawPath"] == "/things/t-1"
    assert event["rawQueryString"] == "a=1&b=x%20y&a=2"
    assert event["cookies"] == ["c1=v1", "c2=v2", "c3=v3"]
    sent = {
        "host": f"127.0.0.1:{port}",
        "authorization": f"Bearer {bearer}",
        "content-type": "application/json",
        "user-agent": "agent/1.0",
        "x-dup": "one,two",
    }
    assert {name: event["headers"].get(name) for name in sent} == sent
    assert "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["pathParameters"] == {"thing_id": "t-1"}
    assert (event["body"], event["isBase64Encoded"]) == (body.decode(), False)
    context = event["requestContext"]
    assert set(context) == {
        "accountId",
        "apiId",
        "authorizer",
        "domainName",
        "domainPrefix",
        "http",
        "requestId",
        "routeKey",
        "stage",
        "time",
        "timeEpoch",
    }
    assert re.fullmatch(r"\d{12}", context["accountId"])
    assert isinstance(context["apiId"], str) and context["apiId"]
    assert context["domainName"] == "127.0.0.1"
    assert context["domainPrefix"] == "127"  # the first label of domainName
    assert context["http"] == {
        "method": "POST",
        "path": "/things/t-1",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "agent/1.0",
    }
    assert isinstance(context["requestId"], str) and context["requestId"]
    assert context["routeKey"] == "POST /things/{thing_id}"
    assert context["stage"] == "$default"
    assert isinstance(context["timeEpoch"], int) and before_ms <= context["timeEpoch"] <= after_ms
    assert context["time"] == datetime.fromtimestamp(context["timeEpoch"] // 1000, UTC).strftime(
        "%d/%b/%Y:%H:%M:%S +0000"
    )
    claims = context["authorizer"]["jwt"]["claims"]
    assert {k: claims[k] for k in ("sub", "org_id", "role", "iss", "aud")} == {
        "sub": "user-1",
        "org_id": "org-1",
        "role": "admin",
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    assert all(isinstance(v, str) for v in claims.values())  # API Gateway hands claims as strings
    assert set(context["authorizer"]["jwt"]) == {"claims", "scopes"}


def test_a_request_without_body_query_or_cookies_has_none_of_those_fields(recorded: Any) -> None:
    door, function = recorded
    # When a route without an authorizer is called with no body, query or cookie
    assert send(door, ["POST /open/x HTTP/1.1", "Host: api.example.com"]) == 200
    [event] = function.events
    # Then body, cookies, queryStringParameters and stageVariables are absent, rawQueryString
    # is empty, and there is no authorizer
    assert "body" not in event and "cookies" not in event
    assert "queryStringParameters" not in event and "stageVariables" not in event
    assert event["rawQueryString"] == ""
    assert event["isBase64Encoded"] is False
    assert "authorizer" not in event["requestContext"]
    assert (event["requestContext"]["domainName"], event["requestContext"]["domainPrefix"]) == (
        "api.example.com",
        "api",
    )


@pytest.mark.parametrize(
    ("content_type", "body", "encoded"),
    [
        ("application/octet-stream", b"\x00\x01\x02\xff", True),
        ("image/png", b"\x89PNG\r\n\x1a\n", True),
        ("application/octet-stream", b"plain ascii is still binary here", True),
        ("application/x-www-form-urlencoded", b"a=1&b=2", True),
        ("application/json", b'{"a": 1}', False),
        ("application/json; charset=utf-8", b'{"a": "\xc3\xa9"}', False),
        ("text/plain", b"hello", False),
        ("application/problem+json", b"{}", False),
        ("application/xml", b"<a/>", False),
    ],
)
def test_a_body_is_base64_encoded_when_its_content_type_is_not_text(
    recorded: Any, content_type: str, body: bytes, encoded: bool
) -> None:
    door, function = recorded
    # When a body is sent with a content type
    assert send(door, ["POST /open/x HTTP/1.1", "Host: h", f"Content-Type: {content_type}"], body) == 200
    [event] = function.events
    # Then it is base64 exactly when the type is not text, and decodes to the bytes sent
    assert event["isBase64Encoded"] is encoded
    assert (base64.b64decode(event["body"]) if encoded else event["body"].encode()) == body


def test_the_builder_used_by_the_tests_is_the_same_event(recorded: Any) -> None:
    # The tests' ApiClient and the front door share one builder: a direct call carries the
    # same documented shape (lower-cased headers, cookies out of headers, joined parameters)
    from slotguard_local.events import http_api_event

    event = http_api_event(
        "GET",
        "/appointments",
        query="status=scheduled&status=cancelled",
        headers={"Content-Type": "application/json", "Cookie": "a=1; b=2", "X-Dup": "one", "x-dup": "two"},
        claims={"sub": "s", "org_id": "o"},
    )
    assert event["headers"] == {"content-type": "application/json", "x-dup": "one,two"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["queryStringParameters"] == {"status": "scheduled,cancelled"}
    assert event["requestContext"]["authorizer"] == {
        "jwt": {"claims": {"sub": "s", "org_id": "o"}, "scopes": None}
    }
    assert "body" not in event and "stageVariables" not in event
    assert json.loads(json.dumps(event)) == event  # plain JSON, as Lambda delivers it
