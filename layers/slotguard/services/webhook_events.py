"""What each webhook event type does. Each handler runs inside the processor's transaction
(its effect commits together with the delivery's `completed` mark) and answers an
Outcome, or raises RetriableFailure / InvalidPayload."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slotguard.db.booking_repository import BookingRepository
from slotguard.errors import MAX_FIELD_ERRORS, field_errors
from slotguard.models import MAX_REASON_CHARS, BookRequest, RescheduleRequest

M = TypeVar("M", bound=BaseModel)


class RetriableFailure(Exception):
    """Try again later (backoff): the calendar was busy, the database blinked, ..."""


class InvalidPayload(Exception):
    """The payload can never succeed: dead-letter at once."""


@dataclass(frozen=True)
class Outcome:
    result: str  # applied | rejected | ignored
    detail: dict[str, Any] = field(default_factory=dict)


class CancelData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    appointment_id: UUID
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)


class RescheduleData(RescheduleRequest):
    appointment_id: UUID


@dataclass(frozen=True)
class EventContext:
    org_id: UUID
    job_id: str
    bookings: BookingRepository

    @property
    def actor(self) -> str:
        return f"webhook:{self.job_id}"


MAX_ERROR_CHARS = 2000  # what the delivery log keeps of an error (fail_webhook_delivery)


def _parse(model: type[M], data: Any, event_type: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # The field errors the API answers for the same body (`details.errors`: loc, msg, type;
        # never the input), located under the payload's `data`, as JSON.
        errors = field_errors(exc.errors(), ("data",))
        raise InvalidPayload(invalid_data_message(event_type, errors)) from None


def _more_errors(count: int) -> dict[str, Any]:
    return {"loc": ["data"], "msg": f"{count} more error(s)", "type": "more_errors"}


def invalid_data_message(event_type: str, errors: list[dict[str, Any]]) -> str:
    """`data is not valid for <type>: <JSON list of field errors>`, within what the delivery log
    keeps: errors that do not fit are counted in a last entry, so the JSON stays whole.

    One pass, each error serialised once (a sender chooses how many errors its data has: 37,000
    unknown keys fit a webhook body, and trying ever shorter lists cost minutes)."""
    prefix = f"data is not valid for {event_type}: "
    reserve = len(json.dumps(_more_errors(len(errors)), ensure_ascii=False)) + 2
    shown: list[str] = []
    length = len(prefix) + 2  # the brackets
    for err in errors[:MAX_FIELD_ERRORS]:
        piece = json.dumps(err, ensure_ascii=False)
        grown = length + len(piece) + (2 if shown else 0)
        last = len(shown) + 1 == len(errors)
        if grown + (0 if last else reserve) > MAX_ERROR_CHARS:
            break
        shown.append(piece)
        length = grown
    if len(shown) < len(errors):
        shown.append(json.dumps(_more_errors(len(errors) - len(shown)), ensure_ascii=False))
    return prefix + "[" + ", ".join(shown) + "]"


def _settle(outcome: dict[str, Any], applied: set[str]) -> Outcome:
    status = outcome["status"]
    if status == "busy":
        raise RetriableFailure("the calendar was busy")
    if status in applied:
        appointment = outcome.get("appointment") or {}
        return Outcome("applied", {"status": status, "appointment_id": appointment.get("id")})
    if status == "invalid":
        raise InvalidPayload(outcome.get("message", "invalid"))
    # A business refusal (slot taken, no such appointment, ...) is a completed delivery.
    detail: dict[str, Any] = {"status": status}
    if status in ("conflict", "contact_conflict"):
        detail["conflicts"] = [c["id"] for c in outcome.get("conflicts", [])]
    if status == "rule_violation":  # the calendar's rules refused it (their code and version)
        detail["code"] = outcome.get("code")
        detail["rules_version"] = outcome.get("rules_version")
    return Outcome("rejected", detail)


def book(ctx: EventContext, data: Any) -> Outcome:
    request = _parse(BookRequest, data, "appointment.book")
    if request.backfill:  # an admin's flag: a webhook is no admin
        return Outcome("rejected", {"status": "backfill_not_allowed"})
    # The webhook id is the idempotency key: a redelivery replays, never books twice.
    outcome = ctx.bookings.book(
        org_id=ctx.org_id, actor=ctx.actor, request=request, idempotency_key=ctx.job_id, key_scope="webhook"
    )
    return _settle(outcome, {"created", "replayed"})


def cancel(ctx: EventContext, data: Any) -> Outcome:
    request = _parse(CancelData, data, "appointment.cancel")
    outcome = ctx.bookings.cancel(
        org_id=ctx.org_id, actor=ctx.actor, appointment_id=request.appointment_id, reason=request.reason
    )
    return _settle(outcome, {"cancelled", "already_cancelled"})


def reschedule(ctx: EventContext, data: Any) -> Outcome:
    request = _parse(RescheduleData, data, "appointment.reschedule")
    if request.backfill:
        return Outcome("rejected", {"status": "backfill_not_allowed"})
    outcome = ctx.bookings.reschedule(
        org_id=ctx.org_id,
        actor=ctx.actor,
        appointment_id=request.appointment_id,
        scheduled_at=request.scheduled_at,
        duration_minutes=request.duration_minutes,
    )
    return _settle(outcome, {"rescheduled"})


EventHandler = Callable[[EventContext, Any], Outcome]

HANDLERS: dict[str, EventHandler] = {
    "appointment.book": book,
    "appointment.cancel": cancel,
    "appointment.reschedule": reschedule,
}


def ignored(ctx: EventContext, data: Any) -> Outcome:
    return Outcome("ignored", {"reason": "no handler for this event type"})
