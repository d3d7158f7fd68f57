"""Domain errors, and the one place they become HTTP answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from slotguard.models import MAX_CONFLICTS_SHOWN, Appointment


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    """`{"error": {"code", "message", "details"}}`: every error this API's functions answer."""

    error: ErrorInfo


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


# Each field error is bounded too: a `loc` names keys the request chose (a dict's keys), so one
# 900 KB key under 50 errors made a 45 MB 422. At most this many parts, each cut to this length.
MAX_LOC_PARTS = 16
MAX_LOC_PART_CHARS = 200
MAX_ERROR_MSG_CHARS = 500


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def field_errors(errors: Any, prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic's errors as the API answers them (`details.errors`): where (`loc`, under
    `prefix`), what (`msg`), which kind (`type`); never the input itself, and each bounded (a
    `loc` of at most MAX_LOC_PARTS parts of at most MAX_LOC_PART_CHARS characters)."""
    out = []
    for err in errors:
        loc: list[str | int] = [*prefix, *(p for p in err.get("loc", ()) if isinstance(p, str | int))]
        loc = [_cut(p, MAX_LOC_PART_CHARS) if isinstance(p, str) else p for p in loc[:MAX_LOC_PARTS]]
        out.append(
            {
                "loc": loc,
                "msg": _cut(str(err.get("msg", "")), MAX_ERROR_MSG_CHARS),
                "type": _cut(str(err.get("type", "")), MAX_LOC_PART_CHARS),
            }
        )
    return out


class ValidationDetails(BaseModel):
    model_config = ConfigDict(extra="allow")
    errors: list[FieldError] = Field(description="The first 50 problems")
    error_count: int = Field(description="How many problems the request has")
    truncated: bool = Field(description="Whether errors lists fewer than error_count")


class ValidationErrorInfo(ErrorInfo):
    details: ValidationDetails  # type: ignore[assignment]


class ValidationErrorBody(BaseModel):
    error: ValidationErrorInfo


class ConflictDetails(BaseModel):
    model_config = ConfigDict(extra="allow")
    conflicts: list[Appointment] = Field(
        default_factory=list,
        description=f"`slot_conflict`: the first {MAX_CONFLICTS_SHOWN} overlapping appointments,"
        " in time order",
    )
    conflict_count: int | None = Field(
        default=None, description="`slot_conflict`: how many active appointments overlap the slot"
    )
    truncated: bool | None = Field(
        default=None, description="`slot_conflict`: whether conflicts lists fewer than conflict_count"
    )


class ConflictInfo(ErrorInfo):
    details: ConflictDetails  # type: ignore[assignment]


class ConflictBody(BaseModel):
    error: ConflictInfo


class GatewayMessage(BaseModel):
    """The API Gateway's own answers (JWT authorizer, unknown route): it cannot send ours."""

    message: str


UnauthorizedBody = ErrorBody | GatewayMessage


class DomainError(Exception):
    """An expected outcome the caller must be told about, never a 500."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(DomainError):
    status_code, code = 400, "bad_request"


class Unauthorized(DomainError):
    status_code, code = 401, "unauthorized"


class Forbidden(DomainError):
    status_code, code = 403, "forbidden"


class NotFound(DomainError):
    status_code, code = 404, "not_found"


class SlotConflict(DomainError):
    status_code, code = 409, "slot_conflict"


class ContactConflict(DomainError):
    """Under the org's contact_no_overlap policy: the contact already has an appointment then."""

    status_code, code = 409, "contact_conflict"


class NotSchedulable(DomainError):
    status_code, code = 409, "not_schedulable"


class TooManyAppointments(DomainError):
    """An org-wide change bounded by the appointments it would touch in one statement."""

    status_code, code = 409, "too_many_appointments"


class PayloadTooLarge(DomainError):
    status_code, code = 413, "payload_too_large"


class InvalidRequest(DomainError):
    status_code, code = 422, "validation_error"


class RuleRefusal(DomainError):
    """The appointment breaks a rule of its calendar (issue 20): one code per rule."""

    status_code, code = 422, "rule_violation"


class OutsideHours(RuleRefusal):
    code = "outside_hours"


class TooSoon(RuleRefusal):
    code = "too_soon"


class TooFar(RuleRefusal):
    code = "too_far"


class DurationNotAllowed(RuleRefusal):
    code = "duration_not_allowed"


class InThePast(RuleRefusal):
    """Every calendar: an appointment never starts before now (an admin may backfill one)."""

    code = "in_the_past"


RULE_REFUSALS: dict[str, type[RuleRefusal]] = {
    cls.code: cls for cls in (InThePast, OutsideHours, TooSoon, TooFar, DurationNotAllowed)
}


class IdempotencyKeyReused(DomainError):
    status_code, code = 422, "idempotency_key_reused"


class RedriveBacklog(DomainError):
    """The org already has as many redriven deliveries waiting as one org may put on the shared
    queue: retry once some are done."""

    status_code, code = 429, "redrive_backlog"
    retry_after_seconds = 30

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class Busy(DomainError):
    """The calendar's lock was not free within the bounded wait: retry shortly."""

    status_code, code = 503, "busy"
    retry_after_seconds = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class DatabaseUnavailable(Busy):
    code = "database_unavailable"
    retry_after_seconds = 2


class UpstreamUnavailable(DatabaseUnavailable):
    """An AWS service we depend on (SQS, Secrets Manager) did not answer: retry shortly."""

    code = "upstream_unavailable"


# A 422 lists at most this many field errors (a body within its bound may hold 150,000 unknown
# fields, each its own error: a 15 MB answer), and how many there are.
MAX_FIELD_ERRORS = 50


def errors_details(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """A 422's details: the first MAX_FIELD_ERRORS field errors, their count, and whether the
    list is cut."""
    return {
        "errors": errors[:MAX_FIELD_ERRORS],
        "error_count": len(errors),
        "truncated": len(errors) > MAX_FIELD_ERRORS,
    }
