"""Dead-letter reconciler: each message on the SQS DLQ becomes a `dead_letter` log row."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from slotguard.api.sqs import queued_webhook
from slotguard.config import ReconcilerConfig
from slotguard.db.connection import Database
from slotguard.db.webhook_repository import WebhookRepository
from slotguard.observability import logger, metrics
from slotguard.services import webhook_metrics
from slotguard.services.reconciler import DeadLetterReconciler
from slotguard.services.webhook_processor import MalformedMessage

config = ReconcilerConfig.from_env()
reconciler = DeadLetterReconciler(WebhookRepository(Database(config.database)), config.retry)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> str:
    try:
        status = reconciler.reconcile(queued_webhook(record))
    except MalformedMessage:
        webhook_metrics.unparsable()  # ReconcilerUnparsable alarm: it stays on the queue
        raise
    webhook_metrics.dead_lettered()
    return status


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
