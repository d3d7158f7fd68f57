"""Pydantic models of the booking domain: requests (strict) and answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MAX_NOTES_CHARS = 2000
MAX_METADATA_BYTES = 8 * 1024
MAX_REASON_CHARS = 500

# The booking window: every appointment lies in [1970-01-01, 2200-01-01) UTC, so each of its
# timestamps renders in any UTC offset inside years 1..9999 (the table CHECKs the same, 0007).
BOOKING_WINDOW_START = datetime(1970, 1, 1, tzinfo=UTC)
BOOKING_WINDOW_END = datetime(2200, 1, 1, tzinfo=UTC)
BOOKING_WINDOW_MESSAGE = (
    "times must lie inside the booking window 1970-01-01T00:00:00Z .. 2200-01-01T00:00:00Z"
)


def _in_window(value: datetime) -> datetime:
    if not BOOKING_WINDOW_START <= value <= BOOKING_WINDOW_END:
        raise ValueError(BOOKING_WINDOW_MESSAGE)
    return value


def ends_in_window(start: datetime, minutes: int) -> bool:
    return start + timedelta(minutes=minutes) <= BOOKING_WINDOW_END


# An RFC 3339 timestamp with an offset, inside the booking window.
WindowDatetime = Annotated[AwareDatetime, AfterValidator(_in_window)]


def storable(value: Any, where: str = "value") -> None:
    """Refuse what PostgreSQL's text and jsonb cannot store: NUL characters and unpaired UTF-16
    surrogates (JSON may spell both as u-escapes), in strings and in object keys."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where} must not contain NUL (\\u0000) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} must be valid Unicode (no unpaired surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key, where)
            storable(item, where)
    elif isinstance(value, list):
        for item in value:
            storable(item, where)


def _storable_text(value: str) -> str:
    storable(value, "text")
    return value


StoredText = Annotated[str, AfterValidator(_storable_text)]


class _Request(BaseModel):
    # Unknown fields are refused (422) rather than silently dropped: a typo such as
    # "duration" for "duration_minutes" must not book a default.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class BookRequest(_Request):
    contact_id: UUID
    scheduled_at: WindowDatetime
    duration_minutes: int = Field(ge=1, le=1440, strict=True)
    resource_id: UUID | None = None
    notes: StoredText | None = Field(default=None, max_length=MAX_NOTES_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        storable(value, "metadata")
        if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must serialize to at most {MAX_METADATA_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _ends_in_window(self) -> BookRequest:
        if not ends_in_window(self.scheduled_at, self.duration_minutes):
            raise ValueError(BOOKING_WINDOW_MESSAGE)
        return self

    def fingerprint(self) -> str:
        """A stable digest of the request, to tell a replay from a reused key."""
        import hashlib

        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class CancelRequest(_Request):
    reason: StoredText | None = Field(default=None, max_length=MAX_REASON_CHARS)


class RescheduleRequest(_Request):
    scheduled_at: WindowDatetime
    duration_minutes: int | None = Field(default=None, ge=1, le=1440, strict=True)

    @model_validator(mode="after")
    def _ends_in_window(self) -> RescheduleRequest:
        # With no duration the appointment keeps its own; the table's CHECK judges that end.
        if self.duration_minutes is not None and not ends_in_window(self.scheduled_at, self.duration_minutes):
            raise ValueError(BOOKING_WINDOW_MESSAGE)
        return self


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
