"""HTTP plumbing shared by the API functions: the Powertools resolver, the caller's
identity from the verified JWT, and the single mapping of errors to HTTP answers."""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from pydantic import BaseModel

from slotguard.api.validation import SinglePassRequestValidation
from slotguard.errors import (
    ConflictBody,
    DomainError,
    ErrorBody,
    Forbidden,
    Unauthorized,
    UnauthorizedBody,
    ValidationErrorBody,
    errors_details,
    field_errors,
)
from slotguard.models import MAX_SMALL_BODY_BYTES, Actor, parse_json, storable
from slotguard.observability import logger

JSON = content_types.APPLICATION_JSON


def json_response(
    payload: BaseModel | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response[str]:
    body = payload.model_dump_json() if isinstance(payload, BaseModel) else compact_json(payload)
    return Response(status_code=status, content_type=JSON, body=body, headers=headers or {})


def compact_json(payload: Any) -> str:
    """One JSON form for every answer: compact, as pydantic's model_dump_json writes it."""
    return json.dumps(payload, separators=(",", ":"))


def error_envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    return json_response(error_envelope(code, message, details), status, headers)


def response_doc(model: Any, description: str, headers: dict[str, Any] | None = None) -> Any:
    """An OpenAPI response entry for a route whose JSON body is `model`."""
    doc: dict[str, Any] = {"description": description, "content": {"application/json": {"model": model}}}
    if headers:
        doc["headers"] = headers
    return doc


def header_doc(description: str, *, required: bool = False, type_: str = "string") -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": type_}}


# Every error answer of the API: its body, and what each status means. 422 is rewritten by the
# OpenAPI build (Powertools documents its own validation body there; ours is the envelope).
ERROR_DOCS: dict[int, tuple[Any, str]] = {
    400: (ErrorBody, "The body is not UTF-8 JSON (`malformed_json`), or another malformed request"),
    401: (
        UnauthorizedBody,
        "No or no valid bearer token. From the API Gateway authorizer the body is"
        ' `{"message": "Unauthorized"}`; from the function, the error envelope',
    ),
    403: (ErrorBody, "The token's role may not do this, or set this flag (`forbidden`)"),
    404: (ErrorBody, "No such object in the caller's org (`not_found`), also for another org's object"),
    413: (
        ErrorBody,
        "The body is longer than this route can need (`payload_too_large`, `details.max_bytes`)",
    ),
    415: (ErrorBody, "The body is not sent as `Content-Type: application/json` (`unsupported_media_type`)"),
    409: (
        ConflictBody,
        "`slot_conflict`: the slot overlaps active appointments, listed in `details.conflicts`;"
        " `contact_conflict`: under the org's contact_no_overlap policy the contact already has an"
        " appointment then (`details.conflicts`); `not_schedulable`: the appointment is not scheduled"
        " any more; `too_many_appointments`: an org-wide switch would touch more appointments than"
        " its bound (`details.max`)",
    ),
    422: (
        ValidationErrorBody,
        "The request is well-formed JSON but not valid (`validation_error`, each problem in"
        " `details.errors`), an Idempotency-Key reused with another body (`idempotency_key_reused`), or"
        " an appointment that breaks a rule of its calendar (`in_the_past`, `outside_hours`, `too_soon`,"
        " `too_far`, `duration_not_allowed`; `details.rules_version`)",
    ),
    503: (
        ErrorBody,
        "`busy`: the calendar's lock was not free within the bounded wait, or the database was"
        " too slow; `database_unavailable`. Retry after `Retry-After` seconds",
    ),
}
RETRY_AFTER = {"Retry-After": header_doc("Seconds to wait before retrying", required=True, type_="integer")}


def error_docs(*statuses: int) -> dict[int, Any]:
    """The OpenAPI entries of the error answers a route can give."""
    return {
        status: response_doc(*ERROR_DOCS[status], headers=RETRY_AFTER if status == 503 else None)
        for status in statuses
    }


UNSUPPORTED_MEDIA = "send the body as Content-Type: application/json"


class JsonApiResolver(APIGatewayHttpResolver):
    """A resolver whose request bodies are JSON objects, checked once before routing: another
    media type is 415 (Powertools would parse it as a form; a malformed multipart type was a
    500), bytes that are not strict UTF-8 JSON are 400, a body that is not an object (`null`,
    `[]`, `"x"`, which a route could take for "no body") or that holds what the database
    cannot store (NUL, lone surrogates, NaN, nesting beyond 32 levels) is 422."""

    _parsed = threading.local()  # the body _body_refusal parsed, for the event being resolved

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._body_limits: list[tuple[str, re.Pattern[str], int]] = []

    def limit_body(self, method: str, rule: str, max_bytes: int) -> None:
        """The route `method rule` (Powertools' syntax, `/appointments/<appointment_id>`) takes
        bodies of at most max_bytes; every other route at most MAX_SMALL_BODY_BYTES."""
        pattern = re.compile("^" + re.sub(r"<\w+>", "[^/]+", rule) + "$")
        self._body_limits.append((method.upper(), pattern, max_bytes))

    def max_body_bytes(self, event: Mapping[str, Any]) -> int:
        proxy = APIGatewayProxyEventV2(dict(event))
        method, path = proxy.request_context.http.method.upper(), proxy.path
        for limit_method, pattern, max_bytes in self._body_limits:
            if limit_method == method and pattern.match(path):
                return max_bytes
        return MAX_SMALL_BODY_BYTES

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        refusal = _size_refusal(event, self.max_body_bytes(event)) if event.get("body") else None
        if refusal is None:
            refusal, parsed = _body_refusal(event)
        if refusal is not None:
            return refusal
        event = _canonical_media_type(event)
        self._parsed.body = parsed
        try:
            return super().resolve(event, context)
        finally:
            self._parsed.body = None

    def _to_proxy_event(self, event: dict[str, Any]) -> Any:
        """The event as Powertools wraps it, its `json_body` the object already parsed above:
        the same text through the same json.loads (ours only refuses NaN and a BOM first)."""
        proxy = super()._to_proxy_event(event)
        parsed = getattr(self._parsed, "body", None)
        if parsed is not None:
            proxy.__dict__["json_body"] = parsed  # json_body is a functools.cached_property
        return proxy


def _proxy_error(
    status: int,
    code: str,
    message: str,
    errors: list[dict[str, Any]] | None = None,
    details: dict[str, Any] | None = None,
) -> Any:
    """An error answered before routing, as the proxy integration's raw result."""
    if errors is not None:
        details = {**(details or {}), **errors_details(errors)}
    return {
        "statusCode": status,
        "headers": {"Content-Type": JSON},
        "body": compact_json(error_envelope(code, message, details)),
        "isBase64Encoded": False,
    }


def _size_refusal(event: Mapping[str, Any], max_bytes: int) -> dict[str, Any] | None:
    """413 for a body longer than the route can need, measured without decoding or parsing it."""
    body = str(event.get("body"))
    if event.get("isBase64Encoded"):
        size = len(body) * 3 // 4 - body.count("=", max(0, len(body) - 2))
    elif len(body) > max_bytes:
        size = len(body)  # at least one byte a character
    elif len(body) * 4 <= max_bytes:
        size = 0  # at most four bytes a character: within the bound
    else:
        size = len(body.encode("utf-8", "surrogatepass"))
    if size <= max_bytes:
        return None
    return _proxy_error(
        413,
        "payload_too_large",
        f"the request body exceeds the {max_bytes} bytes this route can need",
        details={"max_bytes": max_bytes},
    )


def _canonical_media_type(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event with its JSON media type written in lower case. Media types are
    case-insensitive (RFC 9110), but Powertools' validation matches `application/json` as a
    case-sensitive prefix: `Application/JSON` was a 415 on every route."""
    headers = event.get("headers") or {}
    for key, value in headers.items():
        if key.lower() == "content-type" and isinstance(value, str):
            media_type, sep, params = value.partition(";")
            if media_type.strip().lower() == JSON and media_type != JSON:
                return {**event, "headers": {**headers, key: JSON + sep + params}}
    return event


def _body_refusal(event: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the answer refusing the body, None) or (None, the body parsed, if there is one)."""
    body = event.get("body")
    if not body:
        return None, None
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type != "application/json":
        return _proxy_error(415, "unsupported_media_type", UNSUPPORTED_MEDIA), None
    try:
        raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else str(body).encode()
        parsed = parse_json(raw)
    except (ValueError, binascii.Error):
        return _proxy_error(400, "malformed_json", "the request body is not valid UTF-8 JSON"), None
    if not isinstance(parsed, dict):
        return _proxy_error(
            422,
            "validation_error",
            "the request body must be a JSON object",
            [{"loc": ["body"], "msg": "must be a JSON object", "type": "object_type"}],
        ), None
    try:
        storable(parsed, "the request body")
    except ValueError as exc:
        return _proxy_error(
            422, "validation_error", str(exc), [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]
        ), None
    return None, parsed


def create_resolver(
    *, json_object_bodies: bool = True, body_limits: Mapping[tuple[str, str], int] | None = None
) -> APIGatewayHttpResolver:
    """An HTTP API (payload 2.0) resolver with request validation and our error body. Bodies are
    at most MAX_SMALL_BODY_BYTES, or what `body_limits` gives a route ({(method, rule): bytes}).
    The webhook receiver passes json_object_bodies=False: it verifies the signature before it
    looks at the body at all (and bounds it itself)."""
    app: APIGatewayHttpResolver
    if json_object_bodies:
        app = JsonApiResolver(enable_validation=True)
        for (method, rule), max_bytes in (body_limits or {}).items():
            app.limit_body(method, rule, max_bytes)
    else:
        app = APIGatewayHttpResolver(enable_validation=True)
    # The OpenAPI document still comes from the routes' annotations; requests are validated in
    # one pass where that is simple, by Powertools' own middleware otherwise (api/validation.py).
    app._request_validation_middleware = SinglePassRequestValidation()

    @app.exception_handler(DomainError)
    def _domain_error(exc: DomainError) -> Response[str]:
        details = exc.details
        if exc.status_code == 422:
            # Every 422 lists its problems in details.errors (bounded, counted), as a request
            # validation does.
            errors = details.get("errors") or [{"loc": [], "msg": exc.message, "type": exc.code}]
            details = {**details, **errors_details(errors)}
        return error_response(exc.status_code, exc.code, exc.message, details, exc.headers())

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[str]:
        errors = field_errors(exc.errors())
        if any(e["type"] == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "the request body is not valid JSON")
        return error_response(422, "validation_error", "the request is not valid", errors_details(errors))

    @app.exception_handler(RequestUnsupportedContentType)
    def _not_json(exc: RequestUnsupportedContentType) -> Response[str]:
        return error_response(
            415, "unsupported_media_type", "send the body as Content-Type: application/json"
        )

    @app.exception_handler(UnicodeDecodeError)
    def _not_utf8(exc: UnicodeDecodeError) -> Response[str]:
        # Raised by the resolver while decoding the request body, before any route code runs.
        return error_response(400, "malformed_json", "the request body is not UTF-8 encoded JSON")

    @app.not_found
    def _no_route(exc: Exception) -> Response[str]:
        return error_response(404, "route_not_found", "no such route")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "an unexpected error occurred")

    return app


ORG_ID_CLAIM_MESSAGE = "the token's org_id claim must be a UUID in its canonical form (lower-case 8-4-4-4-12)"


def current_actor(app: APIGatewayHttpResolver) -> Actor:
    """The caller, from the claims the API Gateway JWT authorizer verified. Never the body."""
    claims = app.current_event.request_context.authorizer.jwt_claim
    sub, org = claims.get("sub"), claims.get("org_id")
    if not sub or not org:
        raise Unauthorized("a verified token with 'sub' and 'org_id' claims is required")
    try:
        org_id = UUID(str(org))
    except ValueError as exc:
        raise Unauthorized(ORG_ID_CLAIM_MESSAGE) from exc
    if str(org_id) != org:
        # One spelling per org: `{…}`, `urn:uuid:…`, no hyphens or upper case would name the same
        # org under another string (in logs, metrics, anything keyed by the claim).
        raise Unauthorized(ORG_ID_CLAIM_MESSAGE)
    role = claims.get("role")
    return Actor(org_id=org_id, subject=f"user:{sub}", role=str(role) if role else None)


def require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("this action needs the admin role")
