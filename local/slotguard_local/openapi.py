"""The OpenAPI document of the booking and metrics APIs, generated from the handlers' code
(Powertools). `python -m slotguard_local.openapi > docs/openapi.json` regenerates it; a test
keeps the committed copy in sync, and the local stack serves it at GET /openapi.json."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from slotguard import __version__
from slotguard_local.functions import load_function

DOCUMENTED = ("booking", "metrics", "webhook_receiver")
# Handlers validate their configuration when loaded; describing them needs no real one.
_PLACEHOLDERS = {
    "DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused",
    "WEBHOOK_QUEUE_URL": "http://127.0.0.1:1/000000000000/unused",
    "WEBHOOK_DLQ_URL": "http://127.0.0.1:1/000000000000/unused-dlq",
    "WORKER_STATE_SOURCE": "file:/nonexistent",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def build_openapi() -> dict[str, Any]:
    missing = {k: v for k, v in _PLACEHOLDERS.items() if not os.environ.get(k)}
    os.environ.update(missing)
    try:
        merge = OpenAPIMerge(
            title="slotguard",
            version=__version__,
            description="Booking that never double-books, the webhook receiver, and the webhook"
            " delivery metrics. Every route but the webhook receiver's needs `Authorization: Bearer"
            " <JWT>` with claims `sub`, `org_id` and optionally `role`; the receiver's is"
            " authenticated by the webhook's signature.",
            security_schemes={"jwt": HTTPBearer(bearerFormat="JWT")},
            security=[{"jwt": []}],
            on_conflict="error",
        )
        additions: dict[tuple[str, str], dict[str, Any]] = {}
        for name in DOCUMENTED:
            module = load_function(name)
            merge.add_schema(module.app.get_openapi_schema())
            additions.update(getattr(module, "OPENAPI_ADDITIONS", {}))
        schema: dict[str, Any] = json.loads(merge.get_openapi_json_schema())
        return _our_errors_only(_with_additions(schema, additions))
    finally:
        for key in missing:
            os.environ.pop(key, None)


def _with_additions(
    schema: dict[str, Any], additions: dict[tuple[str, str], dict[str, Any]]
) -> dict[str, Any]:
    """What a handler documents beyond its route's annotations (OPENAPI_ADDITIONS: the webhook
    receiver's headers and signed body, which it reads itself), set on its operation."""
    for (path, method), extra in additions.items():
        schema["paths"][path][method].update(extra)
    return schema


POWERTOOLS_VALIDATION = "#/components/schemas/HTTPValidationError"


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _our_errors_only(schema: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents a 422 with its own body (FastAPI's `{detail}`) on every route; each
    route documents its errors with our envelope (slotguard.api.http.error_docs), so a 422
    still pointing at Powertools' body belongs to a route without inputs: drop it, and every
    component nothing refers to any more."""
    for operations in schema["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            body = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if body.get("$ref") == POWERTOOLS_VALIDATION:
                del responses["422"]
    components = schema["components"]["schemas"]
    while True:
        used = _refs(schema["paths"]) | set().union(*(_refs(c) for c in components.values()))
        unused = set(components) - used
        if not unused:
            return schema
        for name in unused:
            del components[name]


def render() -> str:
    return json.dumps(build_openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
