"""Webhook processor: SQS batches with partial batch responses (ReportBatchItemFailures)."""

from __future__ import annotations

import contextlib
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from slotguard.api.sqs import queued_webhook
from slotguard.aws.sqs import WebhookQueue
from slotguard.config import ProcessorConfig
from slotguard.db.connection import Database
from slotguard.observability import logger, metrics, tracer
from slotguard.services import webhook_metrics
from slotguard.services.webhook_processor import QueuedWebhook, WebhookProcessor

config = ProcessorConfig.from_env()
queue = WebhookQueue(config.webhook_queue_url)
service = WebhookProcessor(
    Database(config.database),
    config.retry,
    queue.delay_retry,
    stale_after_s=config.webhook_claim_stale_after_s,
    lock_wait_ms=config.booking_lock_wait_ms,
    record_budget_ms=config.record_budget_ms,
)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> str:
    with webhook_metrics.processing() as track:
        result = track(service.process(queued_webhook(record), lambda_context.get_remaining_time_in_millis))
    return result.status


def _readable(records: list[dict[str, Any]]) -> list[QueuedWebhook]:
    """The batch's records as messages, for the batch claim; one that cannot be read is left to
    record_handler, which reports it as that record's failure."""
    messages = []
    for record in records:
        with contextlib.suppress(Exception):  # record_handler reports this record's failure
            messages.append(queued_webhook(SQSRecord(record)))
    return messages


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers carry personal data
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    service.claim_batch(_readable(event.get("Records", [])))
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
