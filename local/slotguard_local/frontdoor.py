"""The HTTP front door: API Gateway HTTP API, faithfully enough for the handlers to run
unchanged. Requests become payload-2.0 events for the function the route table names,
bearer tokens are verified like the JWT authorizer (signature, expiry, issuer, audience),
and the function's answer becomes the HTTP response."""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import jwt

from slotguard.topology import Route
from slotguard_local.events import gateway_headers, http_api_event

MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
# Lambda's synchronous response payload limit, "6 MB": its runtime API refuses a response over
# 6,291,556 bytes ("Exceeded maximum allowed payload size (6291556 bytes)."), and API Gateway
# answers 500. Counted on the response as the Python 3.12+ runtime serializes it.
LAMBDA_MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
# Answers of the gateway itself (no function runs), with API Gateway HTTP API's bodies.
UNAUTHORIZED = (401, {"message": "Unauthorized"})
NOT_FOUND = (404, {"message": "Not Found"})
BAD_REQUEST = (400, {"message": "Bad Request"})
TOO_LARGE = (413, {"message": "Request Entity Too Large"})
INTERNAL_ERROR = (500, {"message": "Internal Server Error"})
GATEWAY = "gateway"  # the access log's "function" of an answer no function gave


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes
    function: str = GATEWAY


def compact_json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def lambda_payload_bytes(result: Any) -> int:
    """A function's response as Lambda counts it against its limit: serialized as the Python
    3.12+ runtime does (awslambdaric's marshaller: json with ensure_ascii=False and the default
    separators), so a body's quotes and backslashes count twice, as escaped in the payload."""
    return len(json.dumps(result, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def content_length(value: str | None) -> int | None:
    """The declared body length: 0 when absent, None when not a non-negative decimal integer."""
    if value is None:
        return 0
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    return int(value)


@dataclass(frozen=True)
class JwtSettings:
    secret: str
    issuer: str
    audience: str


class JwtAuthorizer:
    """What the API Gateway JWT authorizer does, with an HS256 dev key instead of a JWKS."""

    def __init__(self, settings: JwtSettings) -> None:
        self._settings = settings

    def claims(self, authorization: str | None) -> dict[str, str] | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = authorization[7:].strip()
        try:
            decoded = jwt.decode(
                token,
                self._settings.secret,
                algorithms=["HS256"],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        # API Gateway hands claims to the function as strings.
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in decoded.items()}


class Function(Protocol):
    """What serves a route: one invocation, its answer; an exception when the function gave none
    (slotguard_local.containers.ContainerPool: containers as processes)."""

    def invoke(self, event: dict[str, Any]) -> Any: ...


def _compile(route: Route) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", route.path)
    return re.compile(f"^{pattern}$")


class _Server(ThreadingHTTPServer):
    """The stdlib's threading server with a listen backlog that takes a burst: socketserver's
    default of 5 reset 6.6 % of 64 and 29 % of 200 clients connecting at once (issue 11). The
    kernel caps it at net.core.somaxconn (4096 on current Linux)."""

    request_queue_size = 1024
    daemon_threads = True


class FrontDoor:
    def __init__(
        self,
        routes: tuple[Route, ...],
        pools: Mapping[str, Function],
        authorizer: JwtAuthorizer,
        openapi: bytes,
        host: str = "127.0.0.1",
        port: int = 3000,
    ) -> None:
        self._routes = [(route, _compile(route)) for route in routes]
        self._pools = pools
        self._authorizer = authorizer
        self._openapi = openapi
        self._server = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="front-door", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> Answer:
        parts = urlsplit(target)
        path = parts.path or "/"
        if method == "GET" and path == "/openapi.json":
            return Answer(200, {"content-type": "application/json"}, [], self._openapi)
        for route, pattern in self._routes:
            match = pattern.match(path)
            if match and route.method == method:
                break
        else:
            return self._json(*NOT_FOUND)
        claims = None
        if route.authorized:
            claims = self._authorizer.claims(headers.get("authorization"))
            if claims is None:
                return self._json(*UNAUTHORIZED)
        event = http_api_event(
            method,
            path,
            route_key=route.route_key,
            path_parameters=match.groupdict() or None,
            query=parts.query,
            headers=headers,
            body=body if body else None,
            claims=claims,
            source_ip=source_ip,
        )
        try:
            result = self._pools[route.function].invoke(event)
            answer = self._answer(result, route.function)
        except Exception:
            # The function raised, timed out, crashed or answered something that is no answer:
            # API Gateway's own 500 (the function's log has the error)
            return self._json(*INTERNAL_ERROR)._replace(function=route.function)
        return answer

    @staticmethod
    def _answer(result: Any, function: str) -> Answer:
        if not isinstance(result, dict):
            raise TypeError(f"{function} answered {type(result).__name__}, not a payload 2.0 response")
        size = lambda_payload_bytes(result)
        if size > LAMBDA_MAX_RESPONSE_BYTES:
            # What Lambda's runtime logs when its runtime API refuses the response (then a 500)
            sys.stderr.write(
                f"[slotguard] {function}: response payload of {size} bytes refused: Exceeded maximum"
                f" allowed payload size ({LAMBDA_MAX_RESPONSE_BYTES} bytes).\n"
            )
            raise ValueError(f"{function} answered {size} bytes, over Lambda's response limit")
        out_body = result.get("body") or ""
        raw = base64.b64decode(out_body) if result.get("isBase64Encoded") else out_body.encode()
        return Answer(
            int(result.get("statusCode", 200)),
            dict(result.get("headers") or {}),
            list(result.get("cookies") or []),
            raw,
            function,
        )

    @staticmethod
    def _json(status: int, payload: Any) -> Answer:
        return Answer(status, {"content-type": "application/json"}, [], compact_json(payload))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        door = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: with Nagle's algorithm on, a kept-alive
            # connection's next answer waited for the client's delayed ACK (~40 ms a request).
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                started = time.monotonic()
                answer = self._answer()
                self._send(answer)
                path = urlsplit(self.path).path or "/"
                elapsed_ms = (time.monotonic() - started) * 1000
                # One access line per request: method, path (no query: it may carry personal
                # data), status, latency, and the function that answered ("gateway": none did).
                line = f"{self.command} {path} {answer.status} {elapsed_ms:.0f}ms {answer.function}"
                sys.stdout.write(f"[slotguard] {line}\n")
                sys.stdout.flush()

            def _answer(self) -> Answer:
                length = content_length(self.headers.get("content-length"))
                if length is None:
                    # Never read "up to -1 bytes" (the whole stream): the body's end is unknown.
                    self.close_connection = True
                    return door._json(*BAD_REQUEST)
                if length > MAX_BODY:
                    self.close_connection = True
                    return door._json(*TOO_LARGE)
                body = self.rfile.read(length) if length else b""
                # every header as sent (a name sent twice keeps both values, combined)
                headers = gateway_headers(self.headers.items())
                return door.handle(self.command, self.path, headers, body, self.client_address[0])

            def _send(self, answer: Answer) -> None:
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "connection"):
                        self.send_header(key, value)
                for cookie in answer.cookies:
                    self.send_header("Set-Cookie", cookie)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.body)

            # Every method reaches the route table: one no route has is a 404 {"message": "Not
            # Found"}, as API Gateway's HTTP API answers it (never the stdlib's 501).
            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815
            do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _serve  # noqa: N815

            def __getattr__(self, name: str) -> Any:
                if name.startswith("do_"):  # any other method (QUERY, PROPFIND, ...)
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
