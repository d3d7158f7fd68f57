"""Data access for the webhook delivery log: each method is one SQL API function call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from slotguard.db.connection import Database


class WebhookRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def claim(
        self,
        *,
        org_id: UUID,
        job_id: str,
        event_type: str,
        event_data: Any,
        max_attempts: int,
        stale_after_s: int,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._db.scalar(
            "SELECT slotguard.claim_webhook_delivery(%s, %s, %s, %s, %s, %s)",
            (org_id, job_id, event_type, Jsonb(event_data), max_attempts, stale_after_s),
        )
        return result

    def complete(
        self,
        *,
        org_id: UUID,
        job_id: str,
        attempt: int,
        outcome: str,
        detail: dict[str, Any],
        processing_ms: int,
    ) -> bool:
        return bool(
            self._db.scalar(
                "SELECT slotguard.complete_webhook_delivery(%s, %s, %s, %s, %s, %s)",
                (org_id, job_id, attempt, outcome, Jsonb(detail), processing_ms),
            )
        )

    def fail(
        self,
        *,
        org_id: UUID,
        job_id: str,
        attempt: int,
        error: str,
        dead: bool,
        processing_ms: int,
        outcome: str | None = None,
    ) -> bool:
        return bool(
            self._db.scalar(
                "SELECT slotguard.fail_webhook_delivery(%s, %s, %s, %s, %s, %s, %s)",
                (org_id, job_id, attempt, error, dead, processing_ms, outcome),
            )
        )

    def dead_letter(
        self,
        *,
        org_id: UUID,
        job_id: str,
        event_type: str,
        event_data: Any,
        max_attempts: int,
        receive_count: int,
        error: str,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._db.scalar(
            "SELECT slotguard.dead_letter_webhook_delivery(%s, %s, %s, %s, %s, %s, %s)",
            (org_id, job_id, event_type, Jsonb(event_data), max_attempts, receive_count, error),
            retry_safe=True,
        )
        return result

    def purge_expired(self, what: str, older_than: timedelta, batch: int) -> int:
        return int(
            self._db.scalar(
                "SELECT slotguard.purge_expired(%s, %s, %s)", (what, older_than, batch), retry_safe=True
            )
        )
