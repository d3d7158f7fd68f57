"""Pydantic models of the booking domain: requests (strict) and answers."""

from __future__ import annotations

import itertools
import json
import math
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

MAX_NOTES_CHARS = 2000
MAX_METADATA_BYTES = 8 * 1024
MAX_REASON_CHARS = 500

# The largest body each route can need, refused with 413 before it is parsed (a 10 MB body
# cost 340 MB and seconds to parse and walk). Counted as sent: every character of its text
# spelled as the longest JSON escape (an astral character as a surrogate pair, 12 bytes), then
# about as much again for whitespace. tests/test_request_bounds.py sends the largest valid ones.
JSON_CHAR_MAX_BYTES = len("\\ud83d\\ude00")
# notes 2000 x 12 = 24,000 + metadata 8,192 (measured as escaped JSON) + the other fields < 2,000
MAX_BOOK_BODY_BYTES = 64 * 1024
# A calendar's rules at their bounds (400 dated overrides of 24 intervals each, the week's hours)
# are 358 KB as json.dumps writes them by default, 932 KB indented by 4.
MAX_RULES_BODY_BYTES = 1024 * 1024
# A rules history lists the newest versions within this much rules JSON (calendar_rules.sql).
MAX_RULES_HISTORY_BYTES = 2 * 1024 * 1024
# reason 500 x 12 = 6,000; reschedule < 1,000; and every route without a body
MAX_SMALL_BODY_BYTES = 16 * 1024

# The booking window. A time a client books at is RFC 3339 with an offset, written with a year
# of 1970..2199 and an offset of -12:00..+14:00: so every appointment lies in
# [1969-12-31T10:00Z, 2200-01-02T12:00Z] UTC (the table CHECKs that, 0007) and each of its
# timestamps renders in any offset inside years 1..9999. Times a client reads by (list
# filters, availability) may be written with a year of 1969..2200, so that every timestamp
# the API answers (in UTC) can be sent back as a filter. The OpenAPI document carries both
# rules as patterns, so a schema-valid timestamp is always accepted.
BOOKING_WINDOW_START = datetime(1969, 12, 31, 10, tzinfo=UTC)
BOOKING_WINDOW_END = datetime(2200, 1, 2, 12, tzinfo=UTC)
BOOKING_WINDOW_MESSAGE = (
    "times must be RFC 3339 with an offset of -12:00..+14:00 and a year of 1970..2199"
    " (the booking window; filters may use 1969..2200)"
)
_LEAP_YEAR = (
    r"(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26])|21(?:0[48]|[2468][048]|[13579][26]))"
)
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])"  # 31-day months
    r"|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"  # 30-day months
    r"|02-(?:0[1-9]|1\d|2[0-8]))"  # February; the 29th only in leap years, below
)
_TIME = r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
_OFFSET = r"(?:Z|\+(?:0\d|1[0-3]):[0-5]\d|\+14:00|-(?:0\d|1[01]):[0-5]\d|-12:00)"


def _timestamp_pattern(years: str) -> str:
    return rf"^(?:{years}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29){_TIME}{_OFFSET}$"


WINDOW_PATTERN = _timestamp_pattern(r"(?:19[7-9]\d|2[01]\d\d)")
FILTER_PATTERN = _timestamp_pattern(r"(?:1969|19[7-9]\d|2[01]\d\d|2200)")
_MIN_OFFSET, _MAX_OFFSET = timedelta(hours=-12), timedelta(hours=14)


def _timestamp_rule(pattern: str, first_year: int, last_year: int) -> Any:
    """Before parsing: a string must match the pattern exactly; a datetime (Python callers)
    must keep the same rules; a number of seconds is not a timestamp of this API."""
    compiled = re.compile(pattern)

    def check(value: Any) -> Any:
        if isinstance(value, str):
            if not compiled.match(value):
                raise ValueError(BOOKING_WINDOW_MESSAGE)
        elif isinstance(value, datetime):
            offset = value.utcoffset()
            if offset is None or not _MIN_OFFSET <= offset <= _MAX_OFFSET:
                raise ValueError(BOOKING_WINDOW_MESSAGE)
            if not first_year <= value.year <= last_year:
                raise ValueError(BOOKING_WINDOW_MESSAGE)
        else:
            raise ValueError(BOOKING_WINDOW_MESSAGE)
        return value

    return check


# A time to book at: RFC 3339 with an offset, inside the booking window.
WindowDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_timestamp_rule(WINDOW_PATTERN, 1970, 2199)),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": WINDOW_PATTERN}),
]
# A time to read by (a filter): one year wider on each side, so any answered time fits.
FilterDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_timestamp_rule(FILTER_PATTERN, 1969, 2200)),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": FILTER_PATTERN}),
]


# A webhook id (the `webhook-id` header, the delivery log's job_id): printable ASCII.
MAX_WEBHOOK_ID_CHARS = 255
WEBHOOK_ID_PATTERN = rf"^[\x20-\x7e]{{1,{MAX_WEBHOOK_ID_CHARS}}}$"
WEBHOOK_ID_RE = re.compile(WEBHOOK_ID_PATTERN)
JobId = Annotated[str, StringConstraints(pattern=WEBHOOK_ID_PATTERN)]


# JSON a client sends nests at most this deep (pydantic cannot serialize ~255 levels, and no
# booking needs more than a few).
MAX_JSON_DEPTH = 32


def storable(value: Any, where: str = "value", depth: int = 0) -> None:
    """Refuse what PostgreSQL's text and jsonb cannot store, or the API could not answer back:
    NUL characters and unpaired UTF-16 surrogates (JSON may spell both as u-escapes) in strings
    and object keys, non-finite numbers, and nesting deeper than MAX_JSON_DEPTH."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where} must not nest deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where} must not contain NUL (\\u0000) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} must be valid Unicode (no unpaired surrogates)") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must not contain NaN or infinite numbers")
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key, where, depth + 1)
            storable(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            storable(item, where, depth + 1)


def stored_json_bytes(value: Any, *, utf8: bool = False) -> int:
    """The size of `value` as compact JSON once stored: numbers as PostgreSQL's jsonb writes them
    (numeric, never with an exponent, so the 6 bytes of 1e+308 are 309 digits in every answer
    naming it; measured by json.dumps they let 8 KiB of metadata answer 360 KB), strings as
    json.dumps escapes them (ASCII only: never less than their UTF-8 bytes), or with `utf8` as
    jsonb keeps them (UTF-8, only what JSON must escape escaped). The value has passed storable(),
    so its nesting is bounded."""
    if isinstance(value, dict):
        items = sum(
            stored_json_bytes(str(k), utf8=utf8) + 1 + stored_json_bytes(v, utf8=utf8)
            for k, v in value.items()
        )
        return 2 + items + max(len(value) - 1, 0)
    if isinstance(value, list):
        return 2 + sum(stored_json_bytes(v, utf8=utf8) for v in value) + max(len(value) - 1, 0)
    if isinstance(value, float) and math.isfinite(value):
        return len(format(Decimal(repr(value)), "f"))
    if utf8 and isinstance(value, str):
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if value is None or isinstance(value, bool):
        return 4 if value in (None, True) else 5
    if isinstance(value, int):
        return len(str(value))
    return len(json.dumps(value))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str | bytes) -> Any:
    """Strict JSON: no NaN/Infinity, and every failure of the parser (bad syntax, too deep for
    it, a number too long to convert) a ValueError; bytes must be UTF-8 (a BOM is refused)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the body is not UTF-8") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("the body nests too deep") from None


def _storable_text(value: str) -> str:
    storable(value, "text")
    return value


StoredText = Annotated[str, AfterValidator(_storable_text)]


def _json_integer(value: Any) -> Any:
    """JSON has one number type: 30.0 is the integer 30 (JSON Schema agrees). Strings, booleans
    and fractions stay refused by the strict int that follows."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Minutes of an appointment: an integer 1..1440 (1 day), never a string.
DurationMinutes = Annotated[int, Field(ge=1, le=1440, strict=True), BeforeValidator(_json_integer)]


class _Request(BaseModel):
    # Unknown fields are refused (422) rather than silently dropped: a typo such as
    # "duration" for "duration_minutes" must not book a default.
    # Text is kept as sent: stripping it first made a 600-character reason of mostly tabs pass a
    # 500-character limit the OpenAPI document states for the text as sent (schemathesis).
    model_config = ConfigDict(extra="forbid")


class BookRequest(_Request):
    contact_id: UUID
    scheduled_at: WindowDatetime
    duration_minutes: DurationMinutes
    resource_id: UUID | None = None
    notes: StoredText | None = Field(default=None, max_length=MAX_NOTES_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    backfill: StrictBool = Field(
        default=False,
        description="Admins only: record an appointment that starts in the past (the audit trail says so)",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        storable(value, "metadata")
        if stored_json_bytes(value) > MAX_METADATA_BYTES:
            raise ValueError(
                f"metadata must serialize to at most {MAX_METADATA_BYTES} bytes"
                " (numbers counted as stored: 1e300 is 301 digits)"
            )
        return value

    def fingerprint(self) -> str:
        """A stable digest of the request, to tell a replay from a reused key."""
        import hashlib

        # (backfill only when set: a key stored before the flag existed keeps its fingerprint)
        dumped = self.model_dump(mode="json", exclude=None if self.backfill else {"backfill"})
        canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class CancelRequest(_Request):
    reason: StoredText | None = Field(default=None, max_length=MAX_REASON_CHARS)


class RescheduleRequest(_Request):
    scheduled_at: WindowDatetime
    duration_minutes: DurationMinutes | None = None
    backfill: StrictBool = Field(default=False, description="Admins only: move the appointment into the past")


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
    rules_version: int | None = Field(
        default=None, description="The version of its calendar's rules it was checked against (null: none)"
    )


class BookingResult(BaseModel):
    appointment: Appointment
    replayed: bool = False


class RescheduleResult(BaseModel):
    appointment: Appointment
    previous: Appointment


# A UTC timestamp as PostgreSQL's JSON writes it ("...+00:00"); answers write UTC as "Z".
_PG_UTC = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)\+00:00$")


def _utc_as_z(value: Any) -> Any:
    if isinstance(value, str):
        return _PG_UTC.sub(r"\1Z", value)
    if isinstance(value, dict):
        return {key: _utc_as_z(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_utc_as_z(item) for item in value]
    return value


class Change(BaseModel):
    """One field's change: what it was (null when the appointment, or the value, did not exist
    before) and what it became."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    from_: Any = Field(alias="from")
    to: Any


def _one_shape(changes: dict[str, Any]) -> dict[str, Any]:
    """The audit rows record a field that changed as {from, to} and a value that was only set (a
    new appointment's fields, a cancellation's reason, a reschedule's successor) bare; answers
    give every field as {from, to}, the set ones with `from` null. Rows already written keep
    their form in the table, so this is done where they are read."""
    out = {}
    for field, value in changes.items():
        is_change = isinstance(value, dict) and set(value) == {"from", "to"}
        out[field] = value if is_change else {"from": None, "to": value}
    return out


class HistoryEntry(BaseModel):
    id: int
    appointment_id: UUID
    action: Literal["created", "cancelled", "rescheduled"]
    actor: str
    at: datetime
    # What changed, as the audit row recorded it (JSON built in SQL), every field as {from, to};
    # its timestamps are given in the one form every answer uses, UTC with "Z".
    changes: Annotated[dict[str, Change], BeforeValidator(_one_shape), BeforeValidator(_utc_as_z)]


# Lists of an answer are bounded (Lambda refuses a response over 6 MB): the database builds at
# most this many, and the answer says how many there are (tests/test_answer_bounds.py).
MAX_CONFLICTS_SHOWN = 50  # slotguard._conflicts()
MAX_HISTORY_ENTRIES = 100  # slotguard.appointment_history_bounded()
# An appointment's JSON in an answer is at most: its fixed fields, notes and a cancellation
# reason of control characters ("\u0001": 6 bytes each), metadata at its bound (24,216 bytes).
MAX_APPOINTMENT_JSON_BYTES = 1024 + 6 * (MAX_NOTES_CHARS + MAX_REASON_CHARS) + MAX_METADATA_BYTES
# A page stops before its appointments pass this many bytes (next_cursor continues), so even with
# every quote escaped again in Lambda's payload it stays under the 6 MB response limit.
MAX_PAGE_BYTES = 2 * 1024 * 1024


class History(BaseModel):
    appointment_id: UUID
    entries: list[HistoryEntry] = Field(description=f"The oldest {MAX_HISTORY_ENTRIES} entries, oldest first")
    entry_count: int = Field(description="How many entries the appointment's history holds")
    truncated: bool = Field(description="Whether entries lists fewer than entry_count")


class AppointmentPage(BaseModel):
    items: list[Appointment] = Field(
        description="At most `limit` appointments; fewer when they would pass 2 MiB of JSON"
    )
    next_cursor: str | None = Field(description="Where the next page starts; null on the last page")


class RuleBreach(BaseModel):
    code: str
    message: str


class Availability(BaseModel):
    available: bool
    conflicts: list[Appointment] = Field(
        description=f"The first {MAX_CONFLICTS_SHOWN} overlapping appointments, in time order"
    )
    conflict_count: int = Field(description="How many active appointments overlap the slot")
    truncated: bool = Field(description="Whether conflicts lists fewer than conflict_count")
    rule_violation: RuleBreach | None = Field(
        default=None, description="The first rule of the calendar the interval breaks (null: none)"
    )


class Slot(BaseModel):
    start: datetime
    end: datetime
    local_start: str | None = Field(
        default=None,
        description="`start` as a local wall time of `display_time_zone`, without an offset"
        " (`2030-06-02T23:15:00`)",
    )
    local_end: str | None = Field(default=None, description="`end` as a wall time of `display_time_zone`")


class FreeSlots(BaseModel):
    slots: list[Slot]
    duration_minutes: int
    step_minutes: int
    searched_to: datetime = Field(
        description="The search covered [from, searched_to): the requested `to`, or less when the"
        " range held more than 3000 start times or spanned more than 31 days"
    )
    next_from: datetime | None = Field(
        description="Where to continue when the search stopped before `to` (else null)"
    )
    time_zone: str = Field(
        default="UTC", description="The calendar's time zone (of its rules; UTC for a calendar without)"
    )
    display_time_zone: str = Field(
        default="UTC",
        description="The zone of `local_start` / `local_end`: the `time_zone` asked for, else the calendar's",
    )


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


# --- Calendars and their rules (issue 20) ---

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# A local wall time "HH:MM" (24:00 ends a day).
WALL_TIME_PATTERN = r"^(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00)$"
WallTime = Annotated[str, StringConstraints(pattern=WALL_TIME_PATTERN)]
MAX_INTERVALS_PER_DAY = 24
MAX_DATE_OVERRIDES = 400
MAX_NOTICE_MINUTES = 365 * 24 * 60
MAX_HORIZON_DAYS = 3650
# A calendar in a path: `default` (the org's default calendar) or a resource id.
CALENDAR_ID_PATTERN = (
    r"^(?:default|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
BufferMinutes = Annotated[int, Field(ge=0, le=1440, strict=True), BeforeValidator(_json_integer)]


class OpeningInterval(_Request):
    """Open from `start` to `end`, local wall times of the calendar's time zone (`end` after `start`)."""

    start: WallTime
    end: WallTime

    @model_validator(mode="after")
    def _ordered(self) -> OpeningInterval:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


def _disjoint(intervals: list[OpeningInterval], where: str) -> list[OpeningInterval]:
    if len(intervals) > MAX_INTERVALS_PER_DAY:
        raise ValueError(f"{where}: at most {MAX_INTERVALS_PER_DAY} intervals")
    ordered = sorted(intervals, key=lambda i: i.start)
    for first, second in itertools.pairwise(ordered):
        if second.start < first.end:
            raise ValueError(
                f"{where}: intervals {first.start}-{first.end} and {second.start}-{second.end} overlap"
            )
    return ordered


def known_time_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if not value or value != value.strip() or "\x00" in value:
            raise ValueError
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError, OSError):
        raise ValueError("time_zone must be an IANA time zone, for example Europe/Berlin") from None
    return value


class CalendarRules(_Request):
    """A calendar's rules. Every field is optional: an empty object is a calendar without
    restrictions (today's behaviour, apart from no bookings in the past)."""

    time_zone: Annotated[str, Field(max_length=64), AfterValidator(known_time_zone)] = Field(
        default="UTC", description="IANA time zone the hours are local to"
    )
    weekly_hours: dict[Weekday, list[OpeningInterval]] | None = Field(
        default=None,
        description="Opening hours per weekday (a weekday not listed is closed);"
        " null: open all day, every day",
    )
    date_overrides: dict[date, list[OpeningInterval]] = Field(
        default_factory=dict, description="Other hours on a local date; an empty list closes the date"
    )
    buffer_before_minutes: BufferMinutes = 0
    buffer_after_minutes: BufferMinutes = 0
    min_notice_minutes: Annotated[
        int, Field(ge=0, le=MAX_NOTICE_MINUTES, strict=True), BeforeValidator(_json_integer)
    ] = 0
    max_horizon_days: (
        Annotated[int, Field(ge=1, le=MAX_HORIZON_DAYS, strict=True), BeforeValidator(_json_integer)] | None
    ) = None
    min_duration_minutes: DurationMinutes = 1
    max_duration_minutes: DurationMinutes = 1440
    duration_multiple_minutes: DurationMinutes | None = None
    slot_step_minutes: (
        Annotated[int, Field(ge=5, le=1440, strict=True), BeforeValidator(_json_integer)] | None
    ) = None

    @field_validator("weekly_hours")
    @classmethod
    def _weekly_disjoint(
        cls, value: dict[str, list[OpeningInterval]] | None
    ) -> dict[str, list[OpeningInterval]] | None:
        if value is None:
            return None
        return {day: _disjoint(value[day], f"weekly_hours.{day}") for day in WEEKDAYS if day in value}

    @field_validator("date_overrides")
    @classmethod
    def _overrides_disjoint(
        cls, value: dict[date, list[OpeningInterval]]
    ) -> dict[date, list[OpeningInterval]]:
        if len(value) > MAX_DATE_OVERRIDES:
            raise ValueError(f"date_overrides: at most {MAX_DATE_OVERRIDES} dates")
        return {day: _disjoint(value[day], f"date_overrides.{day}") for day in sorted(value)}

    @model_validator(mode="after")
    def _durations(self) -> CalendarRules:
        if self.min_duration_minutes > self.max_duration_minutes:
            raise ValueError("min_duration_minutes must not exceed max_duration_minutes")
        multiple = self.duration_multiple_minutes
        if multiple is not None and not any(
            d % multiple == 0 for d in range(self.min_duration_minutes, self.max_duration_minutes + 1)
        ):
            raise ValueError(
                "duration_multiple_minutes: no duration between the minimum and maximum is a multiple"
            )
        return self


class CalendarRulesView(BaseModel):
    """A calendar's rules as stored: `version` 0 and `rules` null for a calendar that has none."""

    resource_id: UUID | None
    version: int
    rules: CalendarRules | None
    updated_at: datetime | None = None
    updated_by: str | None = None


class RuleViolation(BaseModel):
    appointment: Appointment
    code: str
    message: str


class RuleViolations(BaseModel):
    count: int = Field(description="How many of the calendar's future appointments break the new rules")
    items: list[RuleViolation] = Field(description="The first of them (at most 100), earliest first")


class SetRulesResult(BaseModel):
    calendar: CalendarRulesView
    violations: RuleViolations


class RulesHistoryEntry(BaseModel):
    version: int
    actor: str
    at: datetime
    rules: CalendarRules


class RulesHistory(BaseModel):
    resource_id: UUID | None
    entries: list[RulesHistoryEntry] = Field(
        description=f"The newest versions whose rules add up to at most {MAX_RULES_HISTORY_BYTES} bytes"
        " of JSON (at least the newest), oldest of those first"
    )
    entry_count: int = Field(description="How many versions the calendar's rules have had")
    truncated: bool = Field(description="Whether entries lists fewer than entry_count")


class OrgPolicy(_Request):
    """The org's booking policy."""

    contact_no_overlap: StrictBool = Field(
        default=False,
        description="A contact's active appointments never overlap across the org's calendars",
    )
