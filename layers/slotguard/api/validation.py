"""Request validation with one pass over the route's parameters.

Powertools' OpenAPI request validation (`enable_validation=True`) re-inspects every parameter's
annotation on every request (is it scalar, a sequence, a model, a Body), rebuilds the headers
and the query string as multi-value maps, and walks that generic machinery even when the
request is ordinary: ≈40 µs of a booking's ≈80 µs in the resolver. The annotations still
generate the OpenAPI document, and each parameter is still validated by the same pydantic
TypeAdapter (Powertools' own `ModelField.validate`), so the values a route receives are the
same.

What changes is only how the raw values are found, and only for requests where that is simple:
path parameters as matched, scalar query parameters and headers whose value holds no comma (the
multi-value forms Powertools splits and joins back), and one JSON object body sent as JSON.
Any other request, and every request that fails validation, goes through Powertools' own
middleware from the start, so its answers (the 422s and their `details.errors`, 415, 400) are
Powertools' by construction. tests/test_request_validation.py compares the two on every route.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import api_gateway
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.compat import is_scalar_field

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.api_gateway import Route
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
    from aws_lambda_powertools.event_handler.openapi.compat import ModelField
    from aws_lambda_powertools.event_handler.types import EventHandlerInstance

_JSON = "application/json"
_PLAN = "_slotguard_validation_plan"
_UNSET = object()


class _RouteArgs(dict[str, Any]):
    """A route's arguments. Powertools logs them at DEBUG before calling the route, with an
    f-string, so their repr (the request's models) was built on every request at any level; it
    is built only when that DEBUG line is emitted."""

    def __repr__(self) -> str:
        if api_gateway.logger.isEnabledFor(logging.DEBUG):
            return dict.__repr__(self)
        return "{...}"


class _Plan:
    """How to find and validate one route's parameters, decided once per route."""

    def __init__(self, route: Route) -> None:
        dependant = route.dependant
        self.path = [(f, ("path", f.alias)) for f in dependant.path_params]
        self.query = [(f, ("query", f.alias)) for f in dependant.query_params]
        self.headers = [(f, ("header", f.alias)) for f in dependant.header_params]
        self.body: ModelField | None = dependant.body_params[0] if dependant.body_params else None

    @staticmethod
    def supports(route: Route) -> bool:
        dependant = route.dependant
        if dependant.cookie_params or len(dependant.body_params) > 1:
            return False
        if dependant.body_params and getattr(dependant.body_params[0].field_info, "embed", None):
            return False
        return all(is_scalar_field(f) for f in (*dependant.query_params, *dependant.header_params))

    def values(self, app: EventHandlerInstance) -> dict[str, Any] | None:
        """The route's arguments, or None: not a simple request, or not a valid one."""
        values: dict[str, Any] = _RouteArgs()
        event = app.current_event
        route_args = app.context["_route_args"]
        for field, loc in self.path:
            if not _take(values, field, route_args.get(field.alias), loc):
                return None
        if self.query:
            query = event.query_string_parameters
            for field, loc in self.query:
                if not _take(values, field, query.get(field.alias), loc):
                    return None
        headers = event.headers if self.headers or self.body is not None else None
        if headers is not None:
            for field, loc in self.headers:
                if not _take(values, field, headers.get(field.alias), loc):
                    return None
        if self.body is not None:
            assert headers is not None
            content_type = headers.get("content-type", "")
            if not isinstance(content_type, str):
                return None
            content_type = content_type.strip().lower()
            if content_type and not content_type.startswith(_JSON):
                return None  # a form, multipart or another type: Powertools decides
            try:
                body = event.json_body
            except ValueError:
                return None
            if body is not None and not isinstance(body, dict):
                return None
            if not _take(values, self.body, body, ("body",)):
                return None
        return values


def _take(values: dict[str, Any], field: ModelField, raw: Any, loc: tuple[str, ...]) -> bool:
    """Validate one raw value into `values`; False when Powertools must decide (no value for a
    required parameter, a value it would split or join, an invalid value)."""
    if raw is None:
        if field.required:
            return False
        values[field.name] = field.get_default()
        return True
    if loc[0] != "body" and (not isinstance(raw, str) or "," in raw):
        return False
    value, errors = field.validate(value=raw, loc=loc)
    if errors:
        return False
    values[field.name] = value
    return True


class SinglePassRequestValidation(OpenAPIRequestValidationMiddleware):
    """Powertools' request validation middleware, with the single pass above for the requests it
    covers and Powertools' own handler for every other one."""

    def handler(self, app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response[Any]:
        route: Route = app.context["_route"]
        plan = route.__dict__.get(_PLAN, _UNSET)
        if plan is _UNSET:  # decided once per route, kept on the route (404s get a new route each)
            plan = _Plan(route) if _Plan.supports(route) else None
            setattr(route, _PLAN, plan)
        values = plan.values(app) if plan is not None else None
        if values is None:
            return super().handler(app, next_middleware)
        app.context["_route_args"] = values
        return next_middleware(app)
