"""Booking API (API Gateway HTTP API, payload 2.0): parse, one service call, typed answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from slotguard.api.http import (
    create_resolver,
    current_actor,
    error_docs,
    header_doc,
    json_response,
    require_admin,
    response_doc,
)
from slotguard.config import BookingConfig
from slotguard.db.booking_repository import BookingRepository
from slotguard.db.connection import Database
from slotguard.errors import (
    DurationNotAllowed,
    IdempotencyKeyReused,
    InThePast,
    OutsideHours,
    TooFar,
    TooSoon,
)
from slotguard.models import (
    CALENDAR_ID_PATTERN,
    MAX_BOOK_BODY_BYTES,
    MAX_RULES_BODY_BYTES,
    Appointment,
    AppointmentPage,
    Availability,
    BookRequest,
    CalendarRules,
    CalendarRulesView,
    CancelRequest,
    FilterDatetime,
    FreeSlots,
    History,
    OrgPolicy,
    RescheduleRequest,
    RescheduleResult,
    RulesHistory,
    SetRulesResult,
)
from slotguard.observability import inject_http_api_context, metrics
from slotguard.services import booking_metrics
from slotguard.services.booking import (
    CURSOR_PATTERN,
    MIN_SLOT_STEP_MINUTES,
    BookingService,
    CalendarService,
    PolicyService,
)

config = BookingConfig.from_env()
repository = BookingRepository(Database(config.database), config.booking_lock_wait_ms)
service = BookingService(repository)
calendars = CalendarService(repository)
policies = PolicyService(repository)
# A booking's body may need 64 KiB, a calendar's rules 1 MiB; every other route's fits the
# default 16 KiB (models.py).
app = create_resolver(
    body_limits={
        ("POST", "/appointments"): MAX_BOOK_BODY_BYTES,
        ("PUT", "/calendars/<calendar_id>/rules"): MAX_RULES_BODY_BYTES,
    }
)

Minutes = Annotated[int, Field(ge=1, le=1440)]
StepMinutes = Annotated[int, Field(ge=MIN_SLOT_STEP_MINUTES, le=1440)]
NO_REASON = CancelRequest()  # an absent body


# The 422s a booking valid by its schema may still get, for what no JSON Schema states: the codes
# (the key's earlier body, the clock, the calendar's rules), and the places a `validation_error`
# may name (the body: text PostgreSQL cannot store, nesting beyond 32 levels, anywhere in it;
# metadata: its size as stored). Documented on the operation's 422 as extensions, so a
# contract test accepts exactly these.
VALID_REQUEST_REFUSALS = "x-valid-request-refusals"
VALID_REQUEST_ERROR_LOCS = "x-valid-request-error-locs"
BOOK_REFUSALS_OF_VALID_REQUESTS = (
    IdempotencyKeyReused.code,
    InThePast.code,
    OutsideHours.code,
    TooSoon.code,
    TooFar.code,
    DurationNotAllowed.code,
)
BOOK_422_DOC: Any = {
    **error_docs(422)[422],
    VALID_REQUEST_REFUSALS: list(BOOK_REFUSALS_OF_VALID_REQUESTS),
    VALID_REQUEST_ERROR_LOCS: [["body"], ["body", "metadata"]],
}


@app.post(
    "/appointments",
    responses={
        201: response_doc(
            Appointment,
            "Booked (or, with the same Idempotency-Key and body, the replay of the first answer)",
            headers={
                "Location": header_doc("The appointment's URL", required=True),
                "Idempotent-Replayed": header_doc("`true` when this answer replays an earlier one"),
            },
        ),
        **error_docs(400, 401, 403, 409, 413, 415, 422, 503),
        422: BOOK_422_DOC,
    },
)
def book(
    body: Annotated[BookRequest, Body()],
    idempotency_key: Annotated[
        str | None, Header(alias="idempotency-key", min_length=1, max_length=255)
    ] = None,
) -> Response[str]:
    actor = current_actor(app)
    with booking_metrics.booking():
        result = service.book(actor, body, idempotency_key)
    headers = {"Location": f"/appointments/{result.appointment.id}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(result.appointment, 201, headers)


@app.get(
    "/appointments",
    responses={
        200: response_doc(AppointmentPage, "A page of appointments (cancelled ones too, unless filtered)"),
        **error_docs(401, 422, 503),
    },
)
def list_appointments(
    start: Annotated[FilterDatetime | None, Query(alias="from")] = None,
    end: Annotated[FilterDatetime | None, Query(alias="to")] = None,
    resource_id: Annotated[UUID | None, Query()] = None,
    status: Annotated[Literal["scheduled", "cancelled"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page")
    ] = None,
) -> Response[str]:
    page = service.list_appointments(
        current_actor(app),
        start=start,
        end=end,
        resource_id=resource_id,
        status=status,
        limit=limit,
        cursor=cursor,
    )
    return json_response(page)


@app.get(
    "/appointments/<appointment_id>",
    responses={200: response_doc(Appointment, "The appointment"), **error_docs(401, 404, 422, 503)},
)
def get_appointment(appointment_id: UUID) -> Response[str]:
    return json_response(service.get(current_actor(app), appointment_id))


@app.post(
    "/appointments/<appointment_id>/cancel",
    responses={
        200: response_doc(Appointment, "Cancelled (again: the same answer, unchanged)"),
        **error_docs(400, 401, 404, 413, 415, 422, 503),
    },
)
def cancel_appointment(
    appointment_id: UUID, body: Annotated[CancelRequest, Body()] = NO_REASON
) -> Response[str]:
    # No body is {}; a body that is not a JSON object (null, [], "x") is a 422.
    return json_response(service.cancel(current_actor(app), appointment_id, body.reason))


@app.post(
    "/appointments/<appointment_id>/reschedule",
    responses={
        200: response_doc(RescheduleResult, "The new appointment and the previous one"),
        **error_docs(400, 401, 403, 404, 409, 413, 415, 422, 503),
    },
)
def reschedule_appointment(appointment_id: UUID, body: Annotated[RescheduleRequest, Body()]) -> Response[str]:
    return json_response(service.reschedule(current_actor(app), appointment_id, body))


@app.get(
    "/appointments/<appointment_id>/history",
    responses={200: response_doc(History, "Audit trail"), **error_docs(401, 404, 422, 503)},
)
def appointment_history(appointment_id: UUID) -> Response[str]:
    return json_response(service.history(current_actor(app), appointment_id))


@app.get(
    "/availability/check",
    responses={200: response_doc(Availability, "Whether the slot is free"), **error_docs(401, 422, 503)},
)
def check_availability(
    start: Annotated[FilterDatetime, Query()],
    duration_minutes: Annotated[Minutes, Query()],
    resource_id: Annotated[UUID | None, Query()] = None,
) -> Response[str]:
    return json_response(
        service.check_availability(
            current_actor(app), start=start, duration_minutes=duration_minutes, resource_id=resource_id
        )
    )


@app.get(
    "/availability/slots",
    responses={200: response_doc(FreeSlots, "Free start times"), **error_docs(401, 422, 503)},
)
def free_slots(
    start: Annotated[FilterDatetime, Query(alias="from")],
    end: Annotated[FilterDatetime, Query(alias="to")],
    duration_minutes: Annotated[Minutes, Query()],
    step_minutes: Annotated[StepMinutes | None, Query()] = None,
    resource_id: Annotated[UUID | None, Query()] = None,
    time_zone: Annotated[
        str | None,
        Query(
            max_length=64,
            description="IANA zone to show the slots' local wall times in (default: the calendar's)",
        ),
    ] = None,
) -> Response[str]:
    return json_response(
        service.free_slots(
            current_actor(app),
            start=start,
            end=end,
            duration_minutes=duration_minutes,
            step_minutes=step_minutes,
            resource_id=resource_id,
            time_zone=time_zone,
        )
    )


CalendarId = Annotated[
    str,
    Path(pattern=CALENDAR_ID_PATTERN, description="`default` (the org's default calendar) or a resource id"),
]


@app.put(
    "/calendars/<calendar_id>/rules",
    responses={
        200: response_doc(
            SetRulesResult,
            "The rules, saved as a new version, and the calendar's future appointments that break them"
            " (never changed: listed, at most 100, with their count)",
        ),
        **error_docs(400, 401, 403, 413, 415, 422, 503),
    },
)
def set_calendar_rules(calendar_id: CalendarId, body: Annotated[CalendarRules, Body()]) -> Response[str]:
    actor = current_actor(app)
    require_admin(actor)
    return json_response(calendars.set_rules(actor, calendar_id, body))


@app.get(
    "/calendars/<calendar_id>/rules",
    responses={
        200: response_doc(CalendarRulesView, "The calendar's rules (version 0, rules null: it has none)"),
        **error_docs(401, 422, 503),
    },
)
def get_calendar_rules(calendar_id: CalendarId) -> Response[str]:
    return json_response(calendars.get_rules(current_actor(app), calendar_id))


@app.get(
    "/calendars/<calendar_id>/rules/history",
    responses={
        200: response_doc(RulesHistory, "Every version of the calendar's rules, oldest first"),
        **error_docs(401, 422, 503),
    },
)
def calendar_rules_history(calendar_id: CalendarId) -> Response[str]:
    return json_response(calendars.rules_history(current_actor(app), calendar_id))


@app.get(
    "/org/policy",
    responses={200: response_doc(OrgPolicy, "The org's booking policy"), **error_docs(401, 503)},
)
def get_org_policy() -> Response[str]:
    return json_response(policies.get(current_actor(app)))


@app.put(
    "/org/policy",
    responses={
        200: response_doc(OrgPolicy, "The policy, saved"),
        **error_docs(400, 401, 403, 409, 413, 415, 422, 503),
    },
)
def set_org_policy(body: Annotated[OrgPolicy, Body()]) -> Response[str]:
    actor = current_actor(app)
    require_admin(actor)
    return json_response(policies.set(actor, body))


@inject_http_api_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
