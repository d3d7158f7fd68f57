"""Retention: delete expired delivery-log rows and idempotency keys in small batches."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from slotguard.config import CleanupConfig
from slotguard.db.webhook_repository import WebhookRepository

# A redrive mark older than this belongs to a redrive that died (the metrics function's timeout is
# far shorter): the cleanup puts its row back to dead_letter (services.metrics uses the same age).
STALE_REDRIVE_MARK_S = 120


class CleanupReport(BaseModel):
    completed_deleted: int
    failed_deleted: int
    idempotency_keys_deleted: int
    stale_redrive_marks_settled: int
    batches: int


class RetentionCleanup:
    def __init__(self, log: WebhookRepository, config: CleanupConfig) -> None:
        self._log = log
        self._config = config

    def run(self) -> CleanupReport:
        c = self._config
        batches = 0

        def drain(what: str, older_than: timedelta) -> int:
            nonlocal batches
            total = 0
            while True:
                deleted = self._log.purge_expired(what, older_than, c.cleanup_batch_size)
                batches += 1
                total += deleted
                if deleted < c.cleanup_batch_size:
                    return total

        return CleanupReport(
            completed_deleted=drain("completed", timedelta(days=c.retention_completed_days)),
            failed_deleted=drain("failed", timedelta(days=c.retention_failed_days)),
            idempotency_keys_deleted=drain(
                "idempotency_keys", timedelta(hours=c.retention_idempotency_hours)
            ),
            # rows a redrive marked and never settled (it died): dead letters again
            stale_redrive_marks_settled=self._settle_stale_marks(),
            batches=batches,
        )

    def _settle_stale_marks(self) -> int:
        total = 0
        while True:
            settled = self._log.settle_stale_redrive_marks(
                STALE_REDRIVE_MARK_S, self._config.cleanup_batch_size
            )
            total += settled
            if settled < self._config.cleanup_batch_size:
                return total
