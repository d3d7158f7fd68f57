"""Webhook receiver: POST /webhooks/{org_id}. Verify (Standard Webhooks), enqueue, 202.
No authorizer (the signature is the authentication) and no database."""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from slotguard.api.http import create_resolver, json_response
from slotguard.aws.secrets import WebhookSecretStore
from slotguard.aws.sqs import WebhookQueue
from slotguard.config import ReceiverConfig
from slotguard.observability import inject_http_api_context, metrics, tracer
from slotguard.services import webhook_metrics
from slotguard.services.webhook_receiver import WebhookReceiver

config = ReceiverConfig.from_env()
receiver = WebhookReceiver(
    WebhookSecretStore(
        config.webhook_secret_prefix,
        config.webhook_secret_cache_s,
        unknown_ttl_s=config.webhook_unknown_org_cache_s,
    ),
    WebhookQueue(config.webhook_queue_url),
    config.webhook_max_body_bytes,
)
app = create_resolver(json_object_bodies=False)


@app.post("/webhooks/<org_id>")
def receive_webhook(org_id: str) -> Response[str]:
    event = app.current_event
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode()
    with webhook_metrics.receiving():
        accepted = receiver.receive(org_id, event.headers, body)
    return json_response(accepted, 202)


@inject_http_api_context
@tracer.capture_lambda_handler(capture_response=False)  # answers carry personal data
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
