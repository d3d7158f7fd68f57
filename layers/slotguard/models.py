"""Pydantic models of the booking domain: requests (strict) and answers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

MAX_NOTES_CHARS = 2000
MAX_METADATA_BYTES = 8 * 1024
MAX_REASON_CHARS = 500


class _Request(BaseModel):
    # Unknown fields are refused (422) rather than silently dropped: a typo such as
    # "duration" for "duration_minutes" must not book a default.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class BookRequest(_Request):
    contact_id: UUID
    scheduled_at: AwareDatetime
    duration_minutes: int = Field(ge=1, le=1440, strict=True)
    resource_id: UUID | None = None
    notes: str | None = Field(default=None, max_length=MAX_NOTES_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must serialize to at most {MAX_METADATA_BYTES} bytes")
        return value

    def fingerprint(self) -> str:
        """A stable digest of the request, to tell a replay from a reused key."""
        import hashlib

        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class CancelRequest(_Request):
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)


class RescheduleRequest(_Request):
    scheduled_at: AwareDatetime
    duration_minutes: int | None = Field(default=None, ge=1, le=1440, strict=True)


class Appointment(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: UUID
    org_id: UUID
    contact_id: UUID
    resource_id: UUID | None
    scheduled_at: datetime
    ends_at: datetime
    duration_minutes: int
    status: Literal["scheduled", "cancelled"]
    notes: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None
    cancellation_reason: str | None
    rescheduled_from: UUID | None
    rescheduled_to: UUID | None


class BookingResult(BaseModel):
    appointment: Appointment
    replayed: bool = False


class RescheduleResult(BaseModel):
    appointment: Appointment
    previous: Appointment


class HistoryEntry(BaseModel):
    id: int
    appointment_id: UUID
    action: Literal["created", "cancelled", "rescheduled"]
    actor: str
    at: datetime
    changes: dict[str, Any]


class History(BaseModel):
    appointment_id: UUID
    entries: list[HistoryEntry]


class AppointmentPage(BaseModel):
    items: list[Appointment]
    next_cursor: str | None


class Availability(BaseModel):
    available: bool
    conflicts: list[Appointment]


class Slot(BaseModel):
    start: datetime
    end: datetime


class FreeSlots(BaseModel):
    slots: list[Slot]
    duration_minutes: int
    step_minutes: int


class Actor(BaseModel):
    """Who acts: the verified token's org and subject, or a webhook."""

    model_config = ConfigDict(frozen=True)

    org_id: UUID
    subject: str
    role: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def label(self) -> str:
        return self.subject
