"""Webhook metrics API (API Gateway HTTP API, payload 2.0), scoped to the caller's org."""

from __future__ import annotations

import os
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from slotguard.api.http import (
    RETRY_AFTER,
    create_resolver,
    current_actor,
    error_docs,
    json_response,
    require_admin,
    response_doc,
)
from slotguard.aws.cloudwatch import BookingMetricSource, QueueAgeMetric
from slotguard.aws.sqs import WebhookQueue
from slotguard.aws.workers import worker_state_source
from slotguard.config import MetricsConfig
from slotguard.db.connection import Database
from slotguard.errors import ErrorBody
from slotguard.models import WEBHOOK_ID_PATTERN
from slotguard.observability import METRICS_NAMESPACE, inject_http_api_context, metrics, tracer
from slotguard.services.metrics import (
    MAX_REDRIVE_BODY_BYTES,
    REDRIVE_MAX_PENDING,
    BookingMetrics,
    DeliveryList,
    DeliveryLookup,
    DeliveryStats,
    MetricsService,
    ProcessingTime,
    QueueHealth,
    Range,
    RedriveRequest,
    RedriveResult,
)

config = MetricsConfig.from_env()
service = MetricsService(
    Database(config.database),
    WebhookQueue(config.webhook_queue_url),
    WebhookQueue(config.webhook_dlq_url),
    QueueAgeMetric(),
    worker_state_source(config.worker_state_source),
    config.retry.webhook_max_attempts,
    BookingMetricSource(os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)),
)
app = create_resolver(
    body_limits={("POST", "/webhook-metrics/dead-letter-queue/redrive"): MAX_REDRIVE_BODY_BYTES}
)
REDRIVE_ALL = RedriveRequest()  # an absent body


@app.get(
    "/webhook-metrics/queue-health",
    responses={200: response_doc(QueueHealth, "Queue and worker health"), **error_docs(401, 503)},
)
def queue_health() -> Response[str]:
    return json_response(service.queue_health(current_actor(app)))


@app.get(
    "/webhook-metrics/delivery-stats",
    responses={200: response_doc(DeliveryStats, "Delivery counts and trend"), **error_docs(401, 422, 503)},
)
def delivery_stats(range_: Annotated[Range, Query(alias="range")] = "24h") -> Response[str]:
    return json_response(service.delivery_stats(current_actor(app), range_))


@app.get(
    "/webhook-metrics/recent-failures",
    responses={
        200: response_doc(DeliveryList, "Latest failed and dead-lettered deliveries, without payloads"),
        **error_docs(401, 422, 503),
    },
)
def recent_failures(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Response[str]:
    return json_response(service.recent_failures(current_actor(app), limit))


@app.get(
    "/webhook-metrics/dead-letter-queue",
    responses={
        200: response_doc(DeliveryList, "Dead-lettered deliveries; payloads (`event_data`) for admins only"),
        **error_docs(401, 422, 503),
    },
)
def dead_letter_queue(limit: Annotated[int, Query(ge=1, le=100)] = 50) -> Response[str]:
    return json_response(service.dead_letters(current_actor(app), limit))


@app.post(
    "/webhook-metrics/dead-letter-queue/redrive",
    responses={
        200: response_doc(RedriveResult, "Redriven: back to pending and on the queue"),
        **error_docs(400, 401, 403, 413, 415, 422),
        429: response_doc(
            ErrorBody,
            f"`redrive_backlog`: the org already has {REDRIVE_MAX_PENDING} redriven deliveries not"
            " processed yet (`details.pending_redriven`, `details.max_pending_redriven`); retry after"
            " `Retry-After`",
            headers=RETRY_AFTER,
        ),
        **error_docs(503),
    },
)
def redrive(body: Annotated[RedriveRequest, Body()] = REDRIVE_ALL) -> Response[str]:
    actor = current_actor(app)
    require_admin(actor)
    return json_response(service.redrive(actor, body))


@app.get(
    "/webhook-metrics/processing-time",
    responses={
        200: response_doc(ProcessingTime, "Processing-time percentiles"),
        **error_docs(401, 422, 503),
    },
)
def processing_time(range_: Annotated[Range, Query(alias="range")] = "24h") -> Response[str]:
    return json_response(service.processing_time(current_actor(app), range_))


@app.get(
    "/webhook-metrics/delivery",
    responses={
        200: response_doc(
            DeliveryLookup,
            "One webhook by its id: status, each attempt with its time and error, and its business"
            " outcome (applied, refused with the reason, ignored, invalid); never the payload",
        ),
        **error_docs(401, 404, 422, 503),
    },
)
def delivery(
    webhook_id: Annotated[
        str,
        Query(
            pattern=WEBHOOK_ID_PATTERN,
            description="The webhook id the sender sent (`webhook-id` header): 1 to 255 printable ASCII"
            " characters, so it travels as a query parameter, never as a path segment",
        ),
    ],
) -> Response[str]:
    return json_response(service.delivery(current_actor(app), webhook_id))


@app.get(
    "/booking-metrics",
    responses={
        200: response_doc(
            BookingMetrics,
            "The deployment's booking figures over the range (CloudWatch): attempts, conflicts,"
            " lock-contention refusals (busy) and the mean booking time",
        ),
        **error_docs(401, 422, 503),
    },
)
def booking_metrics(range_: Annotated[Range, Query(alias="range")] = "24h") -> Response[str]:
    current_actor(app)
    return json_response(service.booking_metrics(range_))


@inject_http_api_context
@tracer.capture_lambda_handler(capture_response=False)  # answers carry personal data
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
