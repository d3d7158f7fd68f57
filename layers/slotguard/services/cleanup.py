"""Retention: delete expired delivery-log rows and idempotency keys in small batches."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from slotguard.config import CleanupConfig
from slotguard.db.webhook_repository import WebhookRepository


class CleanupReport(BaseModel):
    completed_deleted: int
    failed_deleted: int
    idempotency_keys_deleted: int
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
            batches=batches,
        )
