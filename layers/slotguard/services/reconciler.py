"""The dead-letter reconciler: every message that reached the SQS DLQ (the processor
crashed or timed out on it maxReceiveCount times) becomes a `dead_letter` row."""

from __future__ import annotations

from slotguard.config import RetryPolicy
from slotguard.db.webhook_repository import WebhookRepository
from slotguard.services.webhook_processor import QueuedWebhook, parse_identity, parse_payload


class DeadLetterReconciler:
    def __init__(self, log: WebhookRepository, retry: RetryPolicy) -> None:
        self._log = log
        self._retry = retry

    def reconcile(self, message: QueuedWebhook) -> str:
        org_id, job_id, event_type = parse_identity(message)
        payload, _ = parse_payload(message.body)
        result = self._log.dead_letter(
            org_id=org_id,
            job_id=job_id,
            event_type=event_type,
            event_data=payload,
            max_attempts=self._retry.webhook_max_attempts,
            receive_count=message.receive_count,
            error=f"moved to the dead-letter queue by the redrive policy (message {message.message_id})",
        )
        return str(result["status"])
