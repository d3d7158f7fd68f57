"""Webhook receiver: POST /webhooks/{org_id}. Verify (Standard Webhooks), enqueue, 202.
No authorizer (the signature is the authentication) and no database."""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from slotguard.api.http import RETRY_AFTER, create_resolver, header_doc, json_response, response_doc
from slotguard.aws.secrets import EdgeSecret, WebhookSecretStore
from slotguard.aws.sqs import WebhookQueue
from slotguard.config import ReceiverConfig
from slotguard.errors import ErrorBody
from slotguard.models import WEBHOOK_ID_PATTERN
from slotguard.observability import inject_http_api_context, metrics, tracer
from slotguard.services import webhook_metrics
from slotguard.services.webhook_receiver import Accepted, WebhookReceiver

config = ReceiverConfig.from_env()
receiver = WebhookReceiver(
    WebhookSecretStore(
        config.webhook_secret_prefix,
        config.webhook_secret_cache_s,
        unknown_ttl_s=config.webhook_unknown_org_cache_s,
    ),
    WebhookQueue(config.webhook_queue_url),
    config.webhook_max_body_bytes,
    # (kept 5 minutes: it changes only with a deploy, and a mismatch re-reads it at once)
    edge=EdgeSecret(config.webhook_edge_secret_arn) if config.webhook_edge_secret_arn else None,
)
app = create_resolver(json_object_bodies=False)


@app.post(
    "/webhooks/<org_id>",
    summary="Receive a signed webhook (Standard Webhooks), queue it, answer 202",
    responses={
        202: response_doc(Accepted, "Verified and queued; processed asynchronously"),
        400: response_doc(
            ErrorBody,
            "`bad_request`: a webhook-id that is not 1..255 printable ASCII characters, or a signed"
            " body that is not a UTF-8 JSON object with a string `type` of at most 200 characters"
            " (`details.max_chars`, `details.chars`), or holds text PostgreSQL"
            " cannot store), or whose payload is over 256 KiB as stored (numbers written in full, as"
            " PostgreSQL's jsonb writes them: 1e300 is 301 digits; `details.stored_bytes`)",
        ),
        401: response_doc(
            ErrorBody,
            "`unauthorized`, one identical body for every reason: missing or bad signature headers, a"
            " signature no active secret of the org makes, a timestamp over 5 minutes off, an org"
            " without secrets",
        ),
        413: response_doc(ErrorBody, "`payload_too_large`: the body is over 256 KiB"),
        503: response_doc(
            ErrorBody,
            "`upstream_unavailable`: the queue or the secret store failed; retry after `Retry-After`",
            headers=RETRY_AFTER,
        ),
    },
)
def receive_webhook(org_id: str) -> Response[str]:
    event = app.current_event
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode()
    with webhook_metrics.receiving():
        accepted = receiver.receive(org_id, event.headers, body)
    return json_response(accepted, 202)


# What the OpenAPI document adds to the operation (slotguard_local.openapi): the route reads its
# headers and body itself, since the signature is checked over the raw bytes before anything is
# parsed, so they are not parameters Powertools would validate (a missing header is the same 401
# as a bad signature, never a 422).
OPENAPI_ADDITIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/webhooks/{org_id}", "post"): {
        "security": [],
        "description": "No bearer token: the signature authenticates the sender. The body is"
        " signed as sent: `webhook-signature` is `v1,` and the base64 HMAC-SHA256, keyed with the"
        " org's secret (`whsec_…`, base64 after the prefix), of `{webhook-id}.{webhook-timestamp}.{body}`.",
        "parameters": [
            {
                "name": "org_id",
                "in": "path",
                "required": True,
                "description": "The org whose secrets sign the webhook",
                "schema": {"type": "string", "format": "uuid"},
            },
            {
                "name": "webhook-id",
                "in": "header",
                **header_doc(
                    "The message id: a redelivery with the same id is processed once (its idempotency key)",
                    required=True,
                ),
                "schema": {"type": "string", "pattern": WEBHOOK_ID_PATTERN},
            },
            {
                "name": "webhook-timestamp",
                "in": "header",
                **header_doc(
                    "When it was sent, in seconds since the epoch; within 5 minutes of now", required=True
                ),
                "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
            },
            {
                "name": "webhook-signature",
                "in": "header",
                **header_doc(
                    "`v1,<base64 signature>`, several space-separated during a secret rotation",
                    required=True,
                ),
            },
        ],
        "requestBody": {
            "required": True,
            "description": "The event, at most 256 KiB: `appointment.book` (data = the POST /appointments"
            " body), `appointment.cancel` ({appointment_id, reason?}), `appointment.reschedule`"
            " ({appointment_id, scheduled_at, duration_minutes?}); other types are acknowledged and ignored",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"type": "string", "minLength": 1, "maxLength": 200},
                            "timestamp": {"type": "string", "format": "date-time"},
                            "data": {"type": "object"},
                        },
                    }
                }
            },
        },
    }
}


@inject_http_api_context
@tracer.capture_lambda_handler(capture_response=False)  # answers carry personal data
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
