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

DOCUMENTED = ("booking", "metrics")
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
            description="Booking that never double-books, and the webhook delivery metrics. "
            "Every route needs `Authorization: Bearer <JWT>` with claims `sub`, `org_id`"
            " and optionally `role`.",
            security_schemes={"jwt": HTTPBearer(bearerFormat="JWT")},
            security=[{"jwt": []}],
            on_conflict="error",
        )
        for name in DOCUMENTED:
            merge.add_schema(load_function(name).app.get_openapi_schema())
        schema: dict[str, Any] = json.loads(merge.get_openapi_json_schema())
        return schema
    finally:
        for key in missing:
            os.environ.pop(key, None)


def render() -> str:
    return json.dumps(build_openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
