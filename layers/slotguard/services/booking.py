"""The booking domain service: plain Python over the repository, answers in models,
refusals as domain errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from slotguard.db.booking_repository import BookingRepository
from slotguard.errors import (
    RULE_REFUSALS,
    Busy,
    ContactConflict,
    Forbidden,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    NotSchedulable,
    SlotConflict,
    TooManyAppointments,
    errors_details,
)
from slotguard.models import (
    MAX_APPOINTMENT_JSON_BYTES,
    MAX_PAGE_BYTES,
    Actor,
    Appointment,
    AppointmentPage,
    Availability,
    BookingResult,
    BookRequest,
    CalendarRules,
    CalendarRulesView,
    FreeSlots,
    History,
    HistoryEntry,
    OrgPolicy,
    RescheduleRequest,
    RescheduleResult,
    RulesHistory,
    SetRulesResult,
    Slot,
    known_time_zone,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_SLOT_RANGE = timedelta(days=31)
MAX_IDEMPOTENCY_KEY_CHARS = 255
# A slot search tests at most this many start times, at least this many minutes apart
# (find_free_slots refuses the same): its cost is bounded whatever the caller asks.
MAX_SLOT_CANDIDATES = 3000
MIN_SLOT_STEP_MINUTES = 5


def _conflict(outcome: dict[str, Any]) -> SlotConflict:
    """The 409: the first MAX_CONFLICTS_SHOWN overlaps (the database builds no more), and how many
    there are."""
    conflicts = [Appointment.model_validate(c).model_dump(mode="json") for c in outcome["conflicts"]]
    return SlotConflict(
        "the slot overlaps an existing appointment",
        {
            "conflicts": conflicts,
            "conflict_count": outcome["conflict_count"],
            "truncated": outcome["truncated"],
        },
    )


def _refusal(outcome: dict[str, Any], appointment_id: UUID | None = None) -> Exception:
    status = outcome["status"]
    if status == "conflict":
        return _conflict(outcome)
    if status == "contact_conflict":
        conflicts = [Appointment.model_validate(c).model_dump(mode="json") for c in outcome["conflicts"]]
        return ContactConflict(
            "the contact already has an appointment at that time", {"conflicts": conflicts}
        )
    if status == "busy":
        return Busy("the calendar is busy, retry shortly")
    if status == "not_found":
        return NotFound("appointment not found", {"id": str(appointment_id)})
    if status == "not_scheduled":
        return NotSchedulable("only a scheduled appointment can be rescheduled", {"id": str(appointment_id)})
    if status == "idempotency_mismatch":
        return IdempotencyKeyReused("this Idempotency-Key was used with another request body")
    if status == "invalid":
        return InvalidRequest(outcome.get("message", "invalid request"))
    if status == "rule_violation" and outcome.get("code") in RULE_REFUSALS:
        return rule_refusal(outcome["code"], outcome["message"], outcome.get("rules_version"))
    return RuntimeError(f"unexpected outcome from the database: {status}")


def rule_refusal(code: str, message: str, rules_version: int | None) -> Exception:
    """A 422 per rule, shaped as every 422 is (`details.errors` names the field), with the version of
    the calendar's rules it was checked against."""
    field = "duration_minutes" if code == "duration_not_allowed" else "scheduled_at"
    errors = [{"loc": ["body", field], "msg": message, "type": code}]
    return RULE_REFUSALS[code](message, {**errors_details(errors), "rules_version": rules_version})


# A page cursor: the last row's position, `<scheduled_at in epoch microseconds>.<id as hex>`.
# Every string matching the pattern is a valid position (the OpenAPI document says so), so a
# cursor is never "unparseable"; clients should still only pass back `next_cursor`.
CURSOR_PATTERN = r"^-?[0-9]{1,16}\.[0-9a-f]{32}$"
_CURSOR_RE = re.compile(CURSOR_PATTERN)


def encode_cursor(appointment: Appointment) -> str:
    delta = appointment.scheduled_at - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}.{appointment.id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    if not _CURSOR_RE.match(cursor):
        raise InvalidRequest("cursor is not valid: pass back a next_cursor", {"cursor": cursor[:100]})
    micros, ident = cursor.split(".")
    return EPOCH + timedelta(microseconds=int(micros)), UUID(hex=ident)


class BookingService:
    def __init__(self, repository: BookingRepository) -> None:
        self._repo = repository

    def book(self, actor: Actor, request: BookRequest, idempotency_key: str | None = None) -> BookingResult:
        if request.backfill and not actor.is_admin:
            raise Forbidden("only an admin may backfill a past appointment")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
            raise InvalidRequest(f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY_CHARS} characters")
        outcome = self._repo.book(
            org_id=actor.org_id, actor=actor.label, request=request, idempotency_key=idempotency_key
        )
        if outcome["status"] in ("created", "replayed"):
            return BookingResult(
                appointment=Appointment.model_validate(outcome["appointment"]),
                replayed=outcome["status"] == "replayed",
            )
        raise _refusal(outcome)

    def get(self, actor: Actor, appointment_id: UUID) -> Appointment:
        found = self._repo.get(org_id=actor.org_id, appointment_id=appointment_id)
        if found is None:
            raise NotFound("appointment not found", {"id": str(appointment_id)})
        return Appointment.model_validate(found)

    def list_appointments(
        self,
        actor: Actor,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        resource_id: UUID | None = None,
        status: Literal["scheduled", "cancelled"] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AppointmentPage:
        # An empty range (from >= to) is an empty page; any range is fine, pages are bounded.
        if start is not None and end is not None and start >= end:
            return AppointmentPage(items=[], next_cursor=None)
        rows = self._repo.list_page(
            org_id=actor.org_id,
            start=start,
            end=end,
            resource_id=resource_id,
            status=status,
            limit=limit + 1,
            after=decode_cursor(cursor) if cursor else None,
        )
        items = [Appointment.model_validate(r) for r in rows[:limit]]
        more = len(rows) > limit
        if limit * MAX_APPOINTMENT_JSON_BYTES > MAX_PAGE_BYTES:
            # A page of large appointments could pass Lambda's response limit: it stops before
            # MAX_PAGE_BYTES (at least one appointment), and next_cursor continues after it.
            size = 0
            for count, item in enumerate(items):
                size += len(item.model_dump_json())
                if size > MAX_PAGE_BYTES and count > 0:
                    items, more = items[:count], True
                    break
        next_cursor = encode_cursor(items[-1]) if more else None
        return AppointmentPage(items=items, next_cursor=next_cursor)

    def cancel(self, actor: Actor, appointment_id: UUID, reason: str | None = None) -> Appointment:
        outcome = self._repo.cancel(
            org_id=actor.org_id, actor=actor.label, appointment_id=appointment_id, reason=reason
        )
        if outcome["status"] in ("cancelled", "already_cancelled"):
            return Appointment.model_validate(outcome["appointment"])
        raise _refusal(outcome, appointment_id)

    def reschedule(self, actor: Actor, appointment_id: UUID, request: RescheduleRequest) -> RescheduleResult:
        if request.backfill and not actor.is_admin:
            raise Forbidden("only an admin may move an appointment into the past")
        outcome = self._repo.reschedule(
            org_id=actor.org_id,
            actor=actor.label,
            appointment_id=appointment_id,
            scheduled_at=request.scheduled_at,
            duration_minutes=request.duration_minutes,
            backfill=request.backfill,
        )
        if outcome["status"] == "rescheduled":
            return RescheduleResult.model_validate(outcome)
        raise _refusal(outcome, appointment_id)

    def history(self, actor: Actor, appointment_id: UUID) -> History:
        found = self._repo.history(org_id=actor.org_id, appointment_id=appointment_id)
        if found is None:
            raise NotFound("appointment not found", {"id": str(appointment_id)})
        return History(
            appointment_id=appointment_id,
            entries=[HistoryEntry.model_validate(r) for r in found["entries"]],
            entry_count=found["entry_count"],
            truncated=found["truncated"],
        )

    def check_availability(
        self, actor: Actor, *, start: datetime, duration_minutes: int, resource_id: UUID | None = None
    ) -> Availability:
        outcome = self._repo.check_availability(
            org_id=actor.org_id, resource_id=resource_id, start=start, duration_minutes=duration_minutes
        )
        return Availability.model_validate(outcome)

    def free_slots(
        self,
        actor: Actor,
        *,
        start: datetime,
        end: datetime,
        duration_minutes: int,
        step_minutes: int | None = None,
        resource_id: UUID | None = None,
        limit: int = MAX_SLOT_CANDIDATES,
        time_zone: str | None = None,
    ) -> FreeSlots:
        # The work is bounded, never refused: at most 31 days and MAX_SLOT_CANDIDATES start
        # times are searched; the answer says where to continue.
        if time_zone is not None:
            try:
                known_time_zone(time_zone)
            except ValueError as exc:
                raise InvalidRequest(
                    str(exc),
                    {"errors": [{"loc": ["query", "time_zone"], "msg": str(exc), "type": "value_error"}]},
                ) from None
        found = self._repo.get_calendar_rules(org_id=actor.org_id, resource_id=resource_id)
        rules = CalendarRules.model_validate(found["rules"]) if found else None
        calendar_zone = rules.time_zone if rules else "UTC"
        shown = ZoneInfo(time_zone or calendar_zone)
        step = (
            step_minutes
            or (rules.slot_step_minutes if rules else None)
            or max(duration_minutes, MIN_SLOT_STEP_MINUTES)
        )
        if step < MIN_SLOT_STEP_MINUTES:
            raise InvalidRequest(f"step_minutes must be at least {MIN_SLOT_STEP_MINUTES}")
        start, end = start.astimezone(UTC), end.astimezone(UTC)  # answers write UTC ("Z")
        length, stride = timedelta(minutes=duration_minutes), timedelta(minutes=step)
        searched_to = min(end, start + MAX_SLOT_RANGE, start + length + stride * (MAX_SLOT_CANDIDATES - 1))
        next_from = (
            start + stride * ((searched_to - start - length) // stride + 1) if searched_to < end else None
        )
        if searched_to - start < length:
            return FreeSlots(
                slots=[],
                duration_minutes=duration_minutes,
                step_minutes=step,
                searched_to=max(start, searched_to),
                next_from=None,
                time_zone=calendar_zone,
                display_time_zone=time_zone or calendar_zone,
            )
        rows = self._repo.free_slots(
            org_id=actor.org_id,
            resource_id=resource_id,
            start=start,
            end=searched_to,
            duration_minutes=duration_minutes,
            step_minutes=step,
            limit=limit,
        )
        slots = []
        for row in rows:
            slot = Slot.model_validate(row)
            # wall times without an offset: every timestamp the API answers is UTC with Z
            slot.local_start = slot.start.astimezone(shown).replace(tzinfo=None).isoformat()
            slot.local_end = slot.end.astimezone(shown).replace(tzinfo=None).isoformat()
            slots.append(slot)
        return FreeSlots(
            slots=slots,
            duration_minutes=duration_minutes,
            step_minutes=step,
            searched_to=searched_to,
            next_from=next_from,
            time_zone=calendar_zone,
            display_time_zone=time_zone or calendar_zone,
        )


def calendar_resource(calendar_id: str) -> UUID | None:
    """A calendar in a path: `default` (the org's default calendar, resource_id null) or a resource id."""
    if calendar_id == "default":
        return None
    try:
        return UUID(calendar_id)
    except ValueError:
        raise InvalidRequest("calendar_id must be `default` or a resource id (UUID)") from None


class CalendarService:
    """Calendars' rules: read by members, written by admins (the handler checks the role)."""

    def __init__(self, repository: BookingRepository) -> None:
        self._repo = repository

    def set_rules(self, actor: Actor, calendar_id: str, rules: CalendarRules) -> SetRulesResult:
        resource_id = calendar_resource(calendar_id)
        outcome = self._repo.set_calendar_rules(
            org_id=actor.org_id,
            actor=actor.label,
            resource_id=resource_id,
            rules=rules.model_dump(mode="json"),
        )
        if outcome["status"] == "saved":
            return SetRulesResult.model_validate(outcome)
        raise _refusal(outcome)

    def get_rules(self, actor: Actor, calendar_id: str) -> CalendarRulesView:
        resource_id = calendar_resource(calendar_id)
        found = self._repo.get_calendar_rules(org_id=actor.org_id, resource_id=resource_id)
        if found is None:
            return CalendarRulesView(resource_id=resource_id, version=0, rules=None)
        return CalendarRulesView.model_validate(found)

    def rules_history(self, actor: Actor, calendar_id: str) -> RulesHistory:
        resource_id = calendar_resource(calendar_id)
        found = self._repo.calendar_rules_history(org_id=actor.org_id, resource_id=resource_id)
        return RulesHistory.model_validate({"resource_id": resource_id, **found})


class PolicyService:
    """The org's booking policy: read by members, written by admins (the handler checks the role)."""

    def __init__(self, repository: BookingRepository) -> None:
        self._repo = repository

    def get(self, actor: Actor) -> OrgPolicy:
        return OrgPolicy.model_validate(self._repo.get_org_policy(org_id=actor.org_id))

    def set(self, actor: Actor, policy: OrgPolicy) -> OrgPolicy:
        outcome = self._repo.set_org_policy(
            org_id=actor.org_id, actor=actor.label, contact_no_overlap=policy.contact_no_overlap
        )
        if outcome["status"] == "saved":
            return OrgPolicy.model_validate(outcome["policy"])
        if outcome["status"] == "contact_conflict":
            conflicts = [Appointment.model_validate(c).model_dump(mode="json") for c in outcome["conflicts"]]
            raise ContactConflict(
                "contacts already hold overlapping appointments: resolve them first", {"conflicts": conflicts}
            )
        if outcome["status"] == "too_many_appointments":
            touched = "marked" if policy.contact_no_overlap else "unmarked"
            raise TooManyAppointments(
                f"the switch would touch more than {outcome['max']} appointments at once (each one"
                f" {touched} for the contact rule); it is bounded at {outcome['max']}",
                {"max": outcome["max"]},
            )
        raise _refusal(outcome)
