"""Data access for bookings: each method is one call of one SQL API function."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from slotguard.db.connection import Database
from slotguard.models import BookRequest


class BookingRepository:
    def __init__(self, db: Database, lock_wait_ms: int = 3000) -> None:
        self._db = db
        self._lock_wait_ms = lock_wait_ms

    def book(
        self, *, org_id: UUID, actor: str, request: BookRequest, idempotency_key: str | None
    ) -> dict[str, Any]:
        """With a key, the request's fingerprint is stored beside it to tell a replay from a reuse."""
        result: dict[str, Any] = self._db.scalar(
            "SELECT slotguard.book_appointment_with_lock(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                org_id,
                actor,
                request.contact_id,
                request.resource_id,
                request.scheduled_at,
                request.duration_minutes,
                request.notes,
                Jsonb(request.metadata),
                idempotency_key,
                request.fingerprint() if idempotency_key is not None else None,
                self._lock_wait_ms,
            ),
            # With a key, a repeat is a replay, never a second booking.
            retry_safe=idempotency_key is not None,
        )
        return result

    def cancel(self, *, org_id: UUID, actor: str, appointment_id: UUID, reason: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self._db.scalar(
            "SELECT slotguard.cancel_appointment(%s, %s, %s, %s, %s)",
            (org_id, actor, appointment_id, reason, self._lock_wait_ms),
            retry_safe=True,  # cancelling twice is a no-op
        )
        return result

    def reschedule(
        self,
        *,
        org_id: UUID,
        actor: str,
        appointment_id: UUID,
        scheduled_at: datetime,
        duration_minutes: int | None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._db.scalar(
            "SELECT slotguard.reschedule_appointment(%s, %s, %s, %s, %s, %s)",
            (org_id, actor, appointment_id, scheduled_at, duration_minutes, self._lock_wait_ms),
        )
        return result

    def get(self, *, org_id: UUID, appointment_id: UUID) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._db.scalar(
            "SELECT slotguard.get_appointment(%s, %s)", (org_id, appointment_id), retry_safe=True
        )
        return result

    def list_page(
        self,
        *,
        org_id: UUID,
        start: datetime | None,
        end: datetime | None,
        resource_id: UUID | None,
        status: str | None,
        limit: int,
        after: tuple[datetime, UUID] | None,
    ) -> list[dict[str, Any]]:
        after_at, after_id = after if after else (None, None)
        result: list[dict[str, Any]] = self._db.scalar(
            "SELECT slotguard.list_appointments(%s, %s, %s, %s, %s, %s, %s, %s)",
            (org_id, start, end, resource_id, status, limit, after_at, after_id),
            retry_safe=True,
        )
        return result

    def history(self, *, org_id: UUID, appointment_id: UUID) -> list[dict[str, Any]] | None:
        result: list[dict[str, Any]] | None = self._db.scalar(
            "SELECT slotguard.appointment_history(%s, %s)", (org_id, appointment_id), retry_safe=True
        )
        return result

    def check_availability(
        self, *, org_id: UUID, resource_id: UUID | None, start: datetime, duration_minutes: int
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._db.scalar(
            "SELECT slotguard.check_availability(%s, %s, %s, %s)",
            (org_id, resource_id, start, duration_minutes),
            retry_safe=True,
        )
        return result

    def free_slots(
        self,
        *,
        org_id: UUID,
        resource_id: UUID | None,
        start: datetime,
        end: datetime,
        duration_minutes: int,
        step_minutes: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._db.scalar(
            "SELECT slotguard.find_free_slots(%s, %s, %s, %s, %s, %s, %s)",
            (org_id, resource_id, start, end, duration_minutes, step_minutes, limit),
            retry_safe=True,
        )
        return result
