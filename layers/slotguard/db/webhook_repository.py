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

    def claim_batch(
        self, items: list[dict[str, Any]], *, max_attempts: int, stale_after_s: int
    ) -> list[dict[str, Any]]:
        """One claim per item ({org_id, job_id, event_type, event_data}), in order, in one statement."""
        result: list[dict[str, Any]] = self._db.scalar(
            "SELECT slotguard.claim_webhook_deliveries(%s, %s, %s)",
            (Jsonb(items), max_attempts, stale_after_s),
        )
        return result

    def complete(
        self,
        *,
        org_id: UUID,
        job_id: str,
        token: UUID,
        outcome: str,
        detail: dict[str, Any],
        processing_ms: int,
    ) -> bool:
        """Completed, one attempt spent; False when `token` no longer holds the claim."""
        return bool(
            self._db.scalar(
                "SELECT slotguard.complete_webhook_delivery(%s, %s, %s, %s, %s, %s)",
                (org_id, job_id, token, outcome, Jsonb(detail), processing_ms),
            )
        )

    def fail(
        self,
        *,
        org_id: UUID,
        job_id: str,
        token: UUID,
        error: str,
        dead: bool,
        processing_ms: int,
        outcome: str | None = None,
        retry_after_s: int | None = None,
    ) -> bool:
        """A failed attempt recorded (one spent), retriable after `retry_after_s` (every copy of
        the message is held back until then); False when `token` no longer holds the claim."""
        return bool(
            self._db.scalar(
                "SELECT slotguard.fail_webhook_delivery_with_backoff(%s, %s, %s, %s, %s, %s, %s, %s)",
                (org_id, job_id, token, error, dead, processing_ms, outcome, retry_after_s),
            )
        )

    def release(self, *, org_id: UUID, job_id: str, token: UUID) -> bool:
        """Give the claim back unspent; False when `token` no longer holds it."""
        return bool(
            self._db.scalar(
                "SELECT slotguard.release_webhook_delivery(%s, %s, %s)",
                (org_id, job_id, token),
                retry_safe=True,
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

    def settle_stale_redrive_marks(self, older_than_s: int, batch: int) -> int:
        return int(
            self._db.scalar(
                "SELECT slotguard.settle_stale_redrive_marks(%s, %s)", (older_than_s, batch), retry_safe=True
            )
        )

    # -- metrics ------------------------------------------------------------------------------
    def delivery_stats(self, org_id: UUID, range_: timedelta, bucket: timedelta) -> dict[str, Any]:
        result: dict[str, Any] = self._db.scalar(
            "SELECT slotguard.webhook_delivery_stats(%s, %s, %s)", (org_id, range_, bucket), retry_safe=True
        )
        return result

    def processing_time(self, org_id: UUID, range_: timedelta) -> dict[str, Any]:
        result: dict[str, Any] = self._db.scalar(
            "SELECT slotguard.webhook_processing_time(%s, %s)", (org_id, range_), retry_safe=True
        )
        return result

    def processing_time_trend(
        self, org_id: UUID, range_: timedelta, bucket: timedelta
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._db.scalar(
            "SELECT slotguard.webhook_processing_time_trend(%s, %s, %s)",
            (org_id, range_, bucket),
            retry_safe=True,
        )
        return result

    def failures(self, org_id: UUID, statuses: list[str], limit: int, with_payload: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._db.scalar(
            "SELECT slotguard.webhook_failures(%s, %s, %s, %s)",
            (org_id, statuses, limit, with_payload),
            retry_safe=True,
        )
        return result

    def delivery(self, org_id: UUID, job_id: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._db.scalar(
            "SELECT slotguard.webhook_delivery(%s, %s)", (org_id, job_id), retry_safe=True
        )
        return result

    def status_counts(self, org_id: UUID) -> dict[str, Any]:
        result: dict[str, Any] = self._db.scalar(
            "SELECT slotguard.webhook_status_counts(%s)", (org_id,), retry_safe=True
        )
        return result

    def redrive_mark(
        self,
        org_id: UUID,
        job_ids: list[str] | None,
        after: int | None,
        limit: int,
        retry_budget: int,
        unconfirmed_after_s: int,
    ) -> list[dict[str, Any]]:
        """Up to `limit` rows back to `pending` under a redrive mark, in one short statement:
        first rows an earlier redrive marked and never settled (`resend`), then dead letters
        after `after`, in id order. No lock outlives the statement."""
        result: list[dict[str, Any]] = self._db.scalar(
            "SELECT slotguard.redrive_mark_webhook_deliveries(%s, %s, %s, %s, %s, %s)",
            (org_id, job_ids, after, limit, retry_budget, unconfirmed_after_s),
        )
        return result

    def redrive_pending_count(self, org_id: UUID, cap: int, unconfirmed_after_s: int) -> int:
        """The org's redriven deliveries not finished yet (a live redrive's marked rows included),
        counted up to cap + 1."""
        return int(
            self._db.scalar(
                "SELECT slotguard.redrive_pending_count(%s, %s, %s)",
                (org_id, cap, unconfirmed_after_s),
                retry_safe=True,
            )
        )

    def redrive_settle(self, org_id: UUID, actor: str, sent: list[str], unsent: list[str]) -> int:
        """The marked rows SQS took are redriven (audited); those it refused are dead letters again."""
        return int(
            self._db.scalar(
                "SELECT slotguard.redrive_settle_webhook_deliveries(%s, %s, %s, %s)",
                (org_id, actor, sent, unsent),
                retry_safe=True,  # a repeat finds no mark left: a no-op
            )
        )

    def redrive_history(self, org_id: UUID, job_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._db.scalar(
            "SELECT slotguard.webhook_redrive_history(%s, %s)", (org_id, job_id), retry_safe=True
        )
        return result
