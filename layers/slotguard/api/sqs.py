"""SQS event records (Powertools data classes) to the services' plain message type."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from slotguard.services.webhook_processor import QueuedWebhook


def queued_webhook(record: SQSRecord) -> QueuedWebhook:
    attributes = {
        name: value.string_value
        for name, value in record.message_attributes.items()
        if value.string_value is not None
    }
    return QueuedWebhook(
        message_id=record.message_id,
        receipt_handle=record.receipt_handle,
        body=record.body,
        attributes=attributes,
        receive_count=int(record.attributes.approximate_receive_count or 1),
    )
