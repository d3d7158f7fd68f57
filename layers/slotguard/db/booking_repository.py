"""Data access for bookings: each method is one call of one SQL API function."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Literal, LiteralString
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from slotguard.db.connection import Database
from slotguard.errors import InvalidRequest
from slotguard.models import BOOKING_WINDOW_MESSAGE, BookRequest

# Idempotency keys live in two spaces: a client's Idempotency-Key can never name a webhook's.
KeyScope = Literal["http", "webhook"]


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """The database's refusals of a request (its CHECKs, its functions' argument checks) are
    the caller's error, never a 500. The models refuse the same first; this is the backstop."""
    try:
        yield
    except psycopg.errors.CheckViolation as exc:
        if exc.diag.constraint_name == "appointments_booking_window":
            raise InvalidRequest(BOOKING_WINDOW_MESSAGE) from exc
        raise
    except psycopg.errors.InvalidParameterValue as exc:
        raise InvalidRequest(exc.diag.message_primary or "invalid request") from exc
    except psycopg.DataError as exc:
        # A value the database cannot store (the models refuse these first); the driver's
        # message may quote the value, so only its class is said.
        raise InvalidRequest(f"a value could not be stored ({type(exc).__name__})") from exc


class BookingRepository:
    def __init__(self, db: Database, lock_wait_ms: int = 3000) -> None:
        self._db = db
        self._lock_wait_ms = lock_wait_ms

    def _call(self, query: LiteralString, params: Sequence[Any], *, retry_safe: bool = False) -> Any:
        with _refusals():
            return self._db.scalar(query, params, retry_safe=retry_safe)

    def book(
        self,
        *,
        org_id: UUID,
        actor: str,
        request: BookRequest,
        idempotency_key: str | None,
        key_scope: KeyScope = "http",
    ) -> dict[str, Any]:
        """With a key, the request's fingerprint is stored beside it to tell a replay from a reuse."""
        stored_key = f"{key_scope}:{idempotency_key}" if idempotency_key is not None else None
        result: dict[str, Any] = self._call(
            "SELECT slotguard.book_appointment_with_lock(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                org_id,
                actor,
                request.contact_id,
                request.resource_id,
                request.scheduled_at,
                request.duration_minutes,
                request.notes,
                Jsonb(request.metadata),
                stored_key,
                request.fingerprint() if idempotency_key is not None else None,
                self._lock_wait_ms,
                request.backfill,
            ),
            # With a key, a repeat is a replay, never a second booking.
            retry_safe=idempotency_key is not None,
        )
        return result

    def cancel(self, *, org_id: UUID, actor: str, appointment_id: UUID, reason: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
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
        backfill: bool = False,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "SELECT slotguard.reschedule_appointment(%s, %s, %s, %s, %s, %s, %s)",
            (org_id, actor, appointment_id, scheduled_at, duration_minutes, self._lock_wait_ms, backfill),
        )
        return result

    def get(self, *, org_id: UUID, appointment_id: UUID) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._call(
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
        result: list[dict[str, Any]] = self._call(
            "SELECT slotguard.list_appointments(%s, %s, %s, %s, %s, %s, %s, %s)",
            (org_id, start, end, resource_id, status, limit, after_at, after_id),
            retry_safe=True,
        )
        return result

    def history(self, *, org_id: UUID, appointment_id: UUID) -> dict[str, Any] | None:
        """{entries (the oldest 100), entry_count, truncated}, or None for another org's id."""
        result: dict[str, Any] | None = self._call(
            "SELECT slotguard.appointment_history_bounded(%s, %s)", (org_id, appointment_id), retry_safe=True
        )
        return result

    def check_availability(
        self, *, org_id: UUID, resource_id: UUID | None, start: datetime, duration_minutes: int
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
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
        result: list[dict[str, Any]] = self._call(
            "SELECT slotguard.find_free_slots(%s, %s, %s, %s, %s, %s, %s)",
            (org_id, resource_id, start, end, duration_minutes, step_minutes, limit),
            retry_safe=True,
        )
        return result

    def set_calendar_rules(
        self, *, org_id: UUID, actor: str, resource_id: UUID | None, rules: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "SELECT slotguard.set_calendar_rules(%s, %s, %s, %s, %s)",
            (org_id, actor, resource_id, Jsonb(rules), self._lock_wait_ms),
        )
        return result

    def get_calendar_rules(self, *, org_id: UUID, resource_id: UUID | None) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._call(
            "SELECT slotguard.get_calendar_rules(%s, %s)", (org_id, resource_id), retry_safe=True
        )
        return result

    def calendar_rules_history(self, *, org_id: UUID, resource_id: UUID | None) -> dict[str, Any]:
        """{entries (the newest versions within 2 MiB of rules, oldest first), entry_count, truncated}"""
        result: dict[str, Any] = self._call(
            "SELECT slotguard.calendar_rules_history(%s, %s)", (org_id, resource_id), retry_safe=True
        )
        return result

    def get_org_policy(self, *, org_id: UUID) -> dict[str, Any]:
        result: dict[str, Any] = self._call("SELECT slotguard.get_org_policy(%s)", (org_id,), retry_safe=True)
        return result

    def set_org_policy(self, *, org_id: UUID, actor: str, contact_no_overlap: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "SELECT slotguard.set_org_policy(%s, %s, %s, %s)",
            (org_id, actor, contact_no_overlap, self._lock_wait_ms),
            retry_safe=True,  # setting the policy again leaves it as it is
        )
        return result
