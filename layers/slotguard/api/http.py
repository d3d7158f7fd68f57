"""HTTP plumbing shared by the API functions: the Powertools resolver, the caller's
identity from the verified JWT, and the single mapping of errors to HTTP answers."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import BaseModel

from slotguard.errors import DomainError, Forbidden, Unauthorized
from slotguard.models import Actor
from slotguard.observability import logger

JSON = content_types.APPLICATION_JSON


def json_response(
    payload: BaseModel | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response[str]:
    # One JSON form for every answer: compact, as pydantic's model_dump_json writes it.
    body = (
        payload.model_dump_json()
        if isinstance(payload, BaseModel)
        else json.dumps(payload, separators=(",", ":"))
    )
    return Response(status_code=status, content_type=JSON, body=body, headers=headers or {})


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return json_response(body, status, headers)


def response_doc(model: Any, description: str) -> Any:
    """An OpenAPI response entry for a route whose JSON body is `model`."""
    return {"description": description, "content": {"application/json": {"model": model}}}


def _validation_details(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        loc = [part for part in err.get("loc", ()) if isinstance(part, str | int)]
        out.append({"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    return out


def create_resolver() -> APIGatewayHttpResolver:
    """An HTTP API (payload 2.0) resolver with request validation and our error body."""
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.exception_handler(DomainError)
    def _domain_error(exc: DomainError) -> Response[str]:
        return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers())

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[str]:
        errors = _validation_details(exc.errors())
        if any(e["type"] == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "the request body is not valid JSON")
        return error_response(422, "validation_error", "the request is not valid", {"errors": errors})

    @app.not_found
    def _no_route(exc: Exception) -> Response[str]:
        return error_response(404, "route_not_found", "no such route")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "an unexpected error occurred")

    return app


def current_actor(app: APIGatewayHttpResolver) -> Actor:
    """The caller, from the claims the API Gateway JWT authorizer verified. Never the body."""
    claims = app.current_event.request_context.authorizer.jwt_claim
    sub, org = claims.get("sub"), claims.get("org_id")
    if not sub or not org:
        raise Unauthorized("a verified token with 'sub' and 'org_id' claims is required")
    try:
        org_id = UUID(str(org))
    except ValueError as exc:
        raise Unauthorized("the token's org_id claim is not a UUID") from exc
    role = claims.get("role")
    return Actor(org_id=org_id, subject=f"user:{sub}", role=str(role) if role else None)


def require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("this action needs the admin role")
