"""Every answer is bounded (issue 19 item 1): Lambda refuses a response payload over 6 MB (API
Gateway then answers 500), so every list a route returns has a bound, with its count and a
`truncated` flag (or a cursor to the rest), and the local front door refuses a larger answer
as Lambda does."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slotguard.topology import Route
from slotguard_local.frontdoor import LAMBDA_MAX_RESPONSE_BYTES, FrontDoor, JwtAuthorizer, JwtSettings
from tests.conftest import ApiClient, Org


class Answering:
    """A function that answers what it is given (the front door's Function protocol)."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result

    def invoke(self, event: dict[str, Any]) -> Any:
        return self.result


def proxy_result(body: str) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": body,
        "isBase64Encoded": False,
    }


def lambda_payload_bytes(result: dict[str, Any]) -> int:
    """The size Lambda's limit applies to: the response as the Python 3.12+ runtime serializes it
    (awslambdaric's marshaller: json, ensure_ascii=False, default separators)."""
    return len(json.dumps(result, ensure_ascii=False).encode())


def padded(target: int, char: str = "a") -> dict[str, Any]:
    """A proxy result whose Lambda payload is exactly `target` bytes."""
    result = proxy_result("")
    base = lambda_payload_bytes(result)
    per_char = lambda_payload_bytes(proxy_result(char)) - base
    result["body"] = char * ((target - base) // per_char)
    assert lambda_payload_bytes(result) == target
    return result


@pytest.fixture
def door() -> Any:
    def make(result: dict[str, Any]) -> FrontDoor:
        route = Route("GET", "/big", "big", authorized=False)
        authorizer = JwtAuthorizer(JwtSettings("s" * 32, "i", "a"))
        return FrontDoor((route,), {"big": Answering(result)}, authorizer, b"{}", port=0)

    made: list[FrontDoor] = []
    yield lambda result: made.append(make(result)) or made[-1]
    for d in made:
        d._server.server_close()


def test_lambdas_limit_is_its_documented_six_mb() -> None:
    # (6 MB as Lambda counts it: 6 MiB and 100 bytes, the size its runtime API refuses beyond)
    assert LAMBDA_MAX_RESPONSE_BYTES == 6 * 1024 * 1024 + 100


def test_the_front_door_passes_an_answer_of_exactly_lambdas_limit(door: Any) -> None:
    # Given a function whose answer is exactly as large as Lambda accepts
    front = door(padded(LAMBDA_MAX_RESPONSE_BYTES))
    # When it is requested
    answer = front.handle("GET", "/big", {}, b"", "127.0.0.1")
    # Then it is delivered
    assert answer.status == 200
    assert len(answer.body) > 6_000_000


@pytest.mark.parametrize("char", ["a", '"'], ids=["plain", "escaped-by-the-runtime"])
def test_the_front_door_answers_500_for_a_function_answer_over_lambdas_limit(door: Any, char: str) -> None:
    # Given a function whose answer is one byte over Lambda's limit as its runtime serializes it
    # (a body of quotes is under the limit as HTTP bytes, over it once escaped in the payload)
    result = (
        padded(LAMBDA_MAX_RESPONSE_BYTES + 1) if char == "a" else padded(LAMBDA_MAX_RESPONSE_BYTES + 2, char)
    )
    front = door(result)
    # When it is requested
    answer = front.handle("GET", "/big", {}, b"", "127.0.0.1")
    # Then the gateway answers API Gateway's 500, as when Lambda refuses the payload, naming the function
    assert answer.status == 500
    assert json.loads(answer.body) == {"message": "Internal Server Error"}
    assert answer.function == "big"


# -- the lists of the booking API ------------------------------------------------------------------

DAY = datetime(2030, 6, 3, tzinfo=UTC)


def fill(
    admin_conn: Any, org: Org, count: int, *, start: datetime = DAY, minutes: int = 1, **columns: Any
) -> None:
    """`count` back-to-back appointments from `start` (written as the owner: setup only)."""
    extra = "".join(f", {name}" for name in columns)
    values = "".join(", %s" for _ in columns)
    with admin_conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO slotguard.appointments (org_id, contact_id, scheduled_at, ends_at, duration_minutes,"
            f" created_by{extra}) VALUES (%s, %s, %s, %s, %s, 'setup'{values})",
            [
                (
                    org.org_id,
                    uuid.uuid4(),
                    start + timedelta(minutes=i * minutes),
                    start + timedelta(minutes=(i + 1) * minutes),
                    minutes,
                    *columns.values(),
                )
                for i in range(count)
            ],
        )


def test_a_409_names_at_most_50_conflicts_with_their_count(api: ApiClient, admin_conn: Any, org: Org) -> None:
    # Given 60 one-minute appointments in one hour
    fill(admin_conn, org, 60)
    # When a booking over that hour is refused
    res = api.post(
        "/appointments",
        json_body={"contact_id": str(uuid.uuid4()), "scheduled_at": DAY.isoformat(), "duration_minutes": 120},
    )
    # Then the 409 names the first 50 of them, in time order, with how many there are
    assert res.status == 409, res.body
    details = res.body["error"]["details"]
    assert len(details["conflicts"]) == 50
    assert details["conflict_count"] == 60 and details["truncated"] is True
    starts = [c["scheduled_at"] for c in details["conflicts"]]
    assert starts == sorted(starts) and starts[0] == "2030-06-03T00:00:00Z"


def test_a_small_409_is_whole_and_says_so(api: ApiClient, org: Org) -> None:
    # Given one appointment
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2030-06-04T10:00:00Z", "duration_minutes": 30}
    first = api.post("/appointments", json_body=body).body
    # When the same slot is booked again
    details = api.post("/appointments", json_body=body).body["error"]["details"]
    # Then it is named, the whole list
    assert [c["id"] for c in details["conflicts"]] == [first["id"]]
    assert details["conflict_count"] == 1 and details["truncated"] is False


def test_a_reschedule_409_is_bounded_too(api: ApiClient, admin_conn: Any, org: Org) -> None:
    # Given 60 one-minute appointments, and another appointment later that day
    fill(admin_conn, org, 60)
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2030-06-03T20:00:00Z", "duration_minutes": 120}
    appt = api.post("/appointments", json_body=body).body
    # When it is moved over them
    res = api.post(f"/appointments/{appt['id']}/reschedule", json_body={"scheduled_at": DAY.isoformat()})
    # Then the 409 is bounded and counted the same way
    assert res.status == 409, res.body
    details = res.body["error"]["details"]
    assert (len(details["conflicts"]), details["conflict_count"], details["truncated"]) == (50, 60, True)


def test_availability_lists_at_most_50_overlaps_with_their_count(
    api: ApiClient, admin_conn: Any, org: Org
) -> None:
    # Given 60 one-minute appointments
    fill(admin_conn, org, 60)
    # When a slot over all of them is checked
    res = api.get("/availability/check", query={"start": DAY.isoformat(), "duration_minutes": 120})
    # Then it is not available, 50 overlaps are listed, and their number is given
    assert res.status == 200
    assert res.body["available"] is False
    assert (len(res.body["conflicts"]), res.body["conflict_count"], res.body["truncated"]) == (50, 60, True)
    # And a free slot is available, with nothing to list
    free = api.get(
        "/availability/check", query={"start": "2030-06-05T10:00:00Z", "duration_minutes": 30}
    ).body
    assert free == {
        "available": True,
        "conflicts": [],
        "conflict_count": 0,
        "truncated": False,
        "rule_violation": None,
    }


def test_the_database_builds_at_most_50_overlaps(admin_conn: Any, org: Org) -> None:
    # Given 1,440 one-minute appointments filling a day
    fill(admin_conn, org, 1440)
    # When the overlaps of the whole day are read where the database builds them
    row = admin_conn.execute(
        "SELECT slotguard._conflicts(%s, NULL, %s, %s)", (org.org_id, DAY, DAY + timedelta(days=1))
    ).fetchone()[0]
    # Then it builds 50 of them and counts the rest
    assert len(row["conflicts"]) == 50
    assert row["conflict_count"] == 1440 and row["truncated"] is True


def test_a_history_lists_at_most_100_entries_with_their_count(
    api: ApiClient, admin_conn: Any, org: Org
) -> None:
    # Given an appointment whose audit trail holds 120 entries (more than the API ever writes)
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2030-06-06T10:00:00Z", "duration_minutes": 30}
    appt = api.post("/appointments", json_body=body).body
    with admin_conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO slotguard.appointment_audit (org_id, appointment_id, action, actor, changes)"
            " VALUES (%s, %s, 'cancelled', 'setup', '{}')",
            [(org.org_id, appt["id"])] * 119,
        )
    # When its history is read
    res = api.get(f"/appointments/{appt['id']}/history")
    # Then the oldest 100 are listed, with the count of all
    assert res.status == 200
    assert (len(res.body["entries"]), res.body["entry_count"], res.body["truncated"]) == (100, 120, True)
    assert res.body["entries"][0]["action"] == "created"


@pytest.mark.parametrize(
    "metadata",
    [{"n": [1e308] * 100}, {"n": [1e-300] * 100}, {"n": [1.5e300] * 30, "s": "x" * 4000}],
    ids=["huge-exponents", "tiny-exponents", "mixed"],
)
def test_metadata_is_measured_as_the_database_writes_it(api: ApiClient, metadata: dict[str, Any]) -> None:
    # Given metadata under 8 KiB as sent, whose numbers PostgreSQL writes out in full (1e308 is
    # 309 digits in jsonb): 700 bytes sent were 31 KB in every answer naming the appointment
    assert len(json.dumps(metadata, separators=(",", ":"))) < 8 * 1024
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2030-06-07T10:00:00Z", "duration_minutes": 30}
    # When it is booked with it
    res = api.post("/appointments", json_body={**body, "metadata": metadata})
    # Then it is refused for its size as stored, naming the field
    assert res.status == 422, res.body
    assert res.body["error"]["details"]["errors"][0]["loc"][-1] == "metadata"


def test_metadata_with_ordinary_numbers_at_the_bound_is_booked_and_answered_as_sent(api: ApiClient) -> None:
    # Given metadata just under 8 KiB holding numbers PostgreSQL writes as they are sent
    metadata = {"n": [1.5, 2, -0.25, 1e-05, 123456789] * 300}
    metadata["n"] = metadata["n"][: 8000 // 9]
    assert len(json.dumps(metadata, separators=(",", ":"))) <= 8 * 1024
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2030-06-08T10:00:00Z", "duration_minutes": 30}
    # When it is booked
    res = api.post("/appointments", json_body={**body, "metadata": metadata})
    # Then it is booked, and its answer is no larger than what was sent
    assert res.status == 201, res.body
    assert len(json.dumps(res.body["metadata"], separators=(",", ":"))) <= 8 * 1024


# The largest appointment an answer can hold: every text at its limit in the character JSON
# escapes longest in the answer and again in Lambda's payload (a control character: "\u0001",
# then "\\u0001"), metadata at its bound in the one its measure counts least ('"': 2 bytes, 4 in
# the payload), every optional field set.
WORST_TEXT_CHAR = "\x01"


def worst_metadata() -> dict[str, Any]:
    from slotguard.models import MAX_METADATA_BYTES, stored_json_bytes

    metadata = {"k": '"' * ((MAX_METADATA_BYTES - len('{"k":""}')) // 2)}
    assert stored_json_bytes(metadata) <= MAX_METADATA_BYTES
    return metadata


def test_a_page_of_the_largest_appointments_fits_lambdas_limit_and_continues(
    booking_fn: Any, admin_conn: Any, org: Org
) -> None:
    from slotguard.models import MAX_NOTES_CHARS, MAX_REASON_CHARS
    from slotguard_local.events import LambdaContext, http_api_event

    # Given 200 cancelled appointments as large as the API lets them be
    fill(
        admin_conn,
        org,
        200,
        minutes=30,
        notes=WORST_TEXT_CHAR * MAX_NOTES_CHARS,
        metadata=json.dumps(worst_metadata()),
        cancellation_reason=WORST_TEXT_CHAR * MAX_REASON_CHARS,
        status="cancelled",
        cancelled_at=DAY,
        resource_id=uuid.uuid4(),
    )
    # When they are listed 200 at a time, page after page
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        event = http_api_event("GET", "/appointments", query=query, claims=org.member)
        result = booking_fn.lambda_handler(event, LambdaContext())
        # Then every page fits Lambda's response limit
        assert result["statusCode"] == 200
        assert lambda_payload_bytes(result) <= LAMBDA_MAX_RESPONSE_BYTES
        page = json.loads(result["body"])
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # And the pages hold every appointment once, in order
    assert len(seen) == len(set(seen)) == 200


def test_a_422_lists_at_most_50_field_errors_with_their_count(pipeline: Any, org: Org) -> None:
    from slotguard_local.events import LambdaContext, http_api_event
    from slotguard_local.functions import load_function

    # Given a redrive body within its 2 MiB bound made of 150,000 unknown fields (each its own error)
    body = "{" + ",".join(f'"k{i}":0' for i in range(150_000)) + "}"
    assert len(body) < 2 * 1024 * 1024
    event = http_api_event(
        "POST",
        "/webhook-metrics/dead-letter-queue/redrive",
        headers={"content-type": "application/json"},
        body=body,
        claims=org.admin,
    )
    # When it is sent
    result = load_function("metrics").lambda_handler(event, LambdaContext())
    # Then the 422 lists the first 50 field errors and counts them all, within Lambda's limit
    assert result["statusCode"] == 422
    assert lambda_payload_bytes(result) <= LAMBDA_MAX_RESPONSE_BYTES
    details = json.loads(result["body"])["error"]["details"]
    assert len(details["errors"]) == 50
    assert details["error_count"] == 150_000 and details["truncated"] is True
    assert details["errors"][0] == {
        "loc": ["body", "k0"],
        "msg": "Extra inputs are not permitted",
        "type": "extra_forbidden",
    }


# -- the lists of the webhook metrics API ----------------------------------------------------------


def seed_deliveries(admin_conn: Any, org: Org, rows: list[dict[str, Any]]) -> None:
    """Delivery-log rows (as the owner: setup only); each dict overrides the defaults."""
    with admin_conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO slotguard.webhook_delivery_log (org_id, job_id, event_type, event_data, status,"
            " attempts, max_attempts, created_at, last_attempt_at, processing_ms, error_message, outcome)"
            " VALUES (%(org)s, %(job)s, %(type)s, %(data)s, %(status)s, 1, 3, now() - interval '5 minutes',"
            " now() - interval '4 minutes', %(ms)s, %(error)s, %(outcome)s)",
            [
                {
                    "org": org.org_id,
                    "job": f"job_{uuid.uuid4().hex}",
                    "type": "appointment.book",
                    "data": "{}",
                    "status": "completed",
                    "ms": 5,
                    "error": None,
                    "outcome": None,
                    **row,
                }
                for row in rows
            ],
        )


@pytest.fixture
def metrics_admin(pipeline: Any, org: Org) -> ApiClient:
    from slotguard_local.functions import load_function

    return ApiClient(load_function("metrics"), org.admin)


def test_per_event_type_stats_list_the_100_busiest_types_with_their_count(
    metrics_admin: ApiClient, admin_conn: Any, org: Org
) -> None:
    # Given deliveries of 150 event types (a sender chooses its types freely), one type busier
    rows = [{"type": f"custom.{i:03d}"} for i in range(150)] + [{"type": "custom.149"}] * 5
    seed_deliveries(admin_conn, org, rows)
    for path in ("/webhook-metrics/delivery-stats", "/webhook-metrics/processing-time"):
        # When the stats are read
        res = metrics_admin.get(path, query={"range": "1h"})
        # Then 100 types are listed, the busiest among them, with the count of all
        assert res.status == 200, res.body
        types = [t["event_type"] for t in res.body["by_event_type"]]
        assert len(types) == 100 and "custom.149" in types, path
        assert res.body["event_type_count"] == 150 and res.body["truncated"] is True, path


def test_dead_letter_payloads_are_shown_up_to_a_budget_and_flagged_beyond(
    metrics_admin: ApiClient, admin_conn: Any, org: Org
) -> None:
    # Given 30 dead letters whose payloads are 200 KB each (6 MB together)
    payload = json.dumps({"type": "appointment.book", "data": {"notes": "x" * 200_000}})
    seed_deliveries(admin_conn, org, [{"status": "dead_letter", "data": payload, "error": "boom"}] * 30)
    # When an admin lists them
    res = metrics_admin.get("/webhook-metrics/dead-letter-queue", query={"limit": "100"})
    # Then every one is listed, the newest payloads up to 1 MiB shown and the others flagged omitted
    assert res.status == 200
    items = res.body["items"]
    assert len(items) == res.body["total"] == 30
    shown = [i for i in items if "event_data" in i]
    assert 1 <= len(shown) <= 5
    assert all(i.get("event_data_omitted") is True for i in items if "event_data" not in i)
    assert all("event_data_omitted" not in i for i in shown)


def test_failure_texts_are_bounded(metrics_admin: ApiClient, admin_conn: Any, org: Org) -> None:
    # Given 100 failures whose error messages grew long (a dead letter's message is appended to
    # on each redrive and dead-lettering)
    seed_deliveries(
        admin_conn, org, [{"status": "failed", "error": "e" * 100_000, "outcome": "o" * 5_000}] * 100
    )
    # When they are listed
    res = metrics_admin.get("/webhook-metrics/recent-failures", query={"limit": "100"})
    # Then each text is cut to its bound
    assert res.status == 200
    assert len(res.body["items"]) == 100
    assert all(len(i["error_message"]) <= 2000 and len(i["outcome"]) <= 200 for i in res.body["items"])


# -- the largest answer of every route, computed from the bounds -----------------------------------
#
# Each route's largest answer, built from the schema's bounds: every list at its bound, every text
# at its limit in the character that costs the most bytes once the answer is JSON and that JSON is
# escaped again as a string in Lambda's payload (a control character: "\u0001" then "\\u0001", 7
# bytes; where a byte budget is measured on the answer, a quote: 2 bytes then 4). Measured as the
# Lambda payload of the handler's proxy result.

UUID0 = uuid.UUID(int=0)
STAMP = datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
# The token's `sub` (the actor of a history entry) fits in the HTTP API's 10 KiB of headers: at
# most ~7.5 KB of claims JSON, a control character costing 6 bytes there.
WORST_ACTOR = "user:" + WORST_TEXT_CHAR * 1280


def worst_appointment(char: str = WORST_TEXT_CHAR) -> Any:
    from slotguard.models import MAX_NOTES_CHARS, MAX_REASON_CHARS, Appointment

    return Appointment(
        id=UUID0,
        org_id=UUID0,
        contact_id=UUID0,
        resource_id=UUID0,
        scheduled_at=STAMP,
        ends_at=STAMP,
        duration_minutes=1440,
        status="cancelled",
        notes=char * MAX_NOTES_CHARS,
        metadata=worst_metadata(),
        created_at=STAMP,
        updated_at=STAMP,
        cancelled_at=STAMP,
        cancellation_reason=char * MAX_REASON_CHARS,
        rescheduled_from=UUID0,
        rescheduled_to=UUID0,
    )


def proxy(status: int, body: Any) -> dict[str, Any]:
    """The handler's answer, as slotguard.api.http.json_response builds it."""
    from slotguard.api.http import compact_json

    text = body.model_dump_json() if hasattr(body, "model_dump_json") else compact_json(body)
    headers = {"Content-Type": "application/json", "Retry-After": "2", "Location": f"/appointments/{UUID0}"}
    return {"statusCode": status, "headers": headers, "body": text, "isBase64Encoded": False, "cookies": []}


def envelope(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def console_assets() -> list[str]:
    from slotguard_local.functions import load_function

    return sorted(load_function("console", fresh=False).FILES)


def console_answer(asset: str | None) -> dict[str, Any]:
    from slotguard_local.functions import load_function

    handler = load_function("console", fresh=False).lambda_handler
    answer: dict[str, Any] = handler({"pathParameters": {"asset": asset} if asset else None}, None)
    assert answer["statusCode"] == 200
    return answer


def largest_answers() -> dict[str, list[dict[str, Any]]]:
    from slotguard.errors import MAX_ERROR_MSG_CHARS, MAX_FIELD_ERRORS, MAX_LOC_PART_CHARS, MAX_LOC_PARTS
    from slotguard.models import (
        MAX_BOOK_BODY_BYTES,
        MAX_CONFLICTS_SHOWN,
        MAX_HISTORY_ENTRIES,
        MAX_PAGE_BYTES,
        MAX_REASON_CHARS,
        MAX_RULES_BODY_BYTES,
        MAX_SMALL_BODY_BYTES,
        AppointmentPage,
        Availability,
        FreeSlots,
        History,
        HistoryEntry,
        RescheduleResult,
        Slot,
    )
    from slotguard.services import metrics as m
    from slotguard.services.booking import MAX_SLOT_CANDIDATES
    from slotguard.services.webhook_receiver import Accepted

    appt = worst_appointment()
    conflicts = {
        "conflicts": [appt.model_dump(mode="json")] * MAX_CONFLICTS_SHOWN,
        "conflict_count": 1441,
        "truncated": True,
    }
    conflict_409 = proxy(
        409, envelope("slot_conflict", "the slot overlaps an existing appointment", conflicts)
    )

    def validation_422(body_bound: int) -> dict[str, Any]:
        # Field names come from the body (a dict's keys may repeat in every error under them):
        # each error is cut to MAX_LOC_PARTS parts of MAX_LOC_PART_CHARS characters and a message
        # of MAX_ERROR_MSG_CHARS, whatever the body's bound
        assert body_bound > 0
        part = WORST_TEXT_CHAR * MAX_LOC_PART_CHARS
        errors = [
            {"loc": [part] * MAX_LOC_PARTS, "msg": WORST_TEXT_CHAR * MAX_ERROR_MSG_CHARS, "type": part}
        ] * MAX_FIELD_ERRORS
        details = {"errors": errors, "error_count": 10**6, "truncated": True}
        return proxy(422, envelope("validation_error", "the request is not valid", details))

    def page(char: str) -> dict[str, Any]:
        # As the service fills it: appointments while their JSON stays within the budget
        item = worst_appointment(char)
        count = max(1, MAX_PAGE_BYTES // len(item.model_dump_json()))
        return proxy(
            200, AppointmentPage(items=[item] * min(count, 200), next_cursor="1" * 16 + "." + "f" * 32)
        )

    entry = HistoryEntry(
        id=2**63 - 1,
        appointment_id=UUID0,
        action="cancelled",
        actor=WORST_ACTOR,
        at=STAMP,
        changes={
            "status": {"from": "scheduled", "to": "cancelled"},
            "reason": WORST_TEXT_CHAR * MAX_REASON_CHARS,
        },
    )
    slot = Slot(start=STAMP, end=STAMP)
    event_type = WORST_TEXT_CHAR * 200
    counts = {
        "total": 2**62,
        "completed": 2**62,
        "failed": 2**62,
        "dead_letter": 2**62,
        "in_progress": 2**62,
        "success_rate": 0.1234,
        "avg_processing_ms": 123456789.12,
        "outcomes": m.OutcomeCounts(applied=2**62, refused=2**62, ignored=2**62, invalid=2**62),
    }
    stats = m.DeliveryStats(
        range="30d",
        bucket="86400s",
        since=STAMP,
        until=STAMP,
        totals=m.DeliveryCounts(**counts),
        by_event_type=[m.EventTypeDeliveryCounts(event_type=event_type, **counts)] * m.MAX_EVENT_TYPES_SHOWN,
        event_type_count=10**9,
        truncated=True,
        trend=[
            m.TrendBucket(bucket_start=STAMP, total=2**62, completed=2**62, failed=2**62, dead_letter=2**62)
        ]
        * 32,
    )
    pct = {"count": 2**62, "p50": 1e9, "p95": 1e9, "p99": 1e9, "avg": 1e9, "max": 1e9}
    timing = m.ProcessingTime(
        range="30d",
        unit="ms",
        overall=m.Percentiles(**pct),
        by_event_type=[m.EventTypePercentiles(event_type=event_type, **pct)] * m.MAX_EVENT_TYPES_SHOWN,
        event_type_count=10**9,
        truncated=True,
        bucket="86400s",
        trend=[m.PercentileBucket(bucket_start=STAMP, count=2**62, p50=1e9, p95=1e9, p99=1e9)] * 32,
    )
    # one webhook: its texts at their bounds, 100 attempts and 100 redrives (the newest kept), and
    # the largest outcome detail the processor records (a conflict: at most 50 appointment ids)
    lookup = m.DeliveryLookup(
        job_id='"' * 255,
        event_type=event_type,
        status="dead_letter",
        outcome="refused",
        reason="x" * 200,
        detail={"status": "conflict", "conflicts": [str(UUID0)] * MAX_CONFLICTS_SHOWN},
        attempts=2**31,
        max_attempts=2**31,
        created_at=STAMP,
        last_attempt_at=STAMP,
        completed_at=STAMP,
        error_message=WORST_TEXT_CHAR * 2000,
        attempt_history=[
            m.AttemptView(
                attempt=2**31,
                at=STAMP,
                result="dead_letter",
                error=WORST_TEXT_CHAR * 2000,
                processing_ms=2**31,
            )
        ]
        * 100,
        redrives=[m.RedriveView(at=STAMP, attempts=2**31)] * 100,
    )
    bookings = m.BookingMetrics(
        range="30d",
        scope="deployment",
        attempted=2**62,
        created=2**62,
        conflicts=2**62,
        busy=2**62,
        busy_rate=1.0,
        avg_booking_ms=1e9,
        thresholds={"avg_booking_ms": 200.0, "busy_rate": 0.01},
    )

    def deliveries(with_payload: bool) -> dict[str, Any]:
        item = {
            "job_id": '"' * 255,
            "event_type": event_type,
            "status": "dead_letter",
            "attempts": 2**31,
            "max_attempts": 50,
            "error_message": WORST_TEXT_CHAR * 2000,
            "outcome": WORST_TEXT_CHAR * 200,
            "created_at": STAMP,
            "last_attempt_at": STAMP,
        }
        items = [m.Delivery(**item, event_data_omitted=True if with_payload else None)] * 100
        if with_payload:
            # the payloads shown: 1 MiB as jsonb writes them ('"' is 2 bytes there, 4 in the payload)
            items[0] = m.Delivery(**item, event_data={"k": '"' * (1024 * 1024 // 2 - 8)})
        return proxy(200, m.DeliveryList(total=2**62, items=items))

    health = m.QueueHealth(
        status="unhealthy",
        reasons=["x" * 80] * 6,
        queue=m.QueueView(waiting=2**31, in_flight=2**31, delayed=2**31, oldest_message_age_s=1e9),
        dead_letter_queue=m.DeadLetterQueueView(waiting=2**31, in_flight=2**31, delayed=2**31, depth=2**33),
        worker=m.WorkerState(
            state="Unavailable",
            batch_size=10000,
            maximum_concurrency=1000,
            batching_window_s=300.0,
            last_processing_result="x" * 200,
            source="x" * 2048,
        ),
        org=m.OrgDeliveries(
            pending=2**62, processing=2**62, failed=2**62, dead_letter=2**62, oldest_unfinished_age_s=1e12
        ),
        thresholds=m.HealthThresholds(
            dead_letter_unhealthy=10,
            oldest_age_degraded_s=300,
            oldest_age_unhealthy_s=900,
            backlog_degraded=1000,
        ),
    )
    error = proxy(404, envelope("not_found", "appointment not found", {"id": str(UUID0)}))
    too_large = proxy(413, envelope("payload_too_large", "x" * 100, {"max_bytes": 2**31}))
    rules_view, rules_history, rules_saved = largest_rules_answers(appt)
    return {
        "POST /appointments": [
            proxy(201, appt),
            conflict_409,
            validation_422(MAX_BOOK_BODY_BYTES),
            too_large,
        ],
        "GET /appointments": [page(WORST_TEXT_CHAR), page('"'), validation_422(MAX_SMALL_BODY_BYTES)],
        "GET /appointments/{appointment_id}": [proxy(200, appt), error],
        "POST /appointments/{appointment_id}/cancel": [
            proxy(200, appt),
            validation_422(MAX_SMALL_BODY_BYTES),
        ],
        "POST /appointments/{appointment_id}/reschedule": [
            proxy(200, RescheduleResult(appointment=appt, previous=appt)),
            conflict_409,
            validation_422(MAX_SMALL_BODY_BYTES),
        ],
        "GET /appointments/{appointment_id}/history": [
            proxy(
                200,
                History(
                    appointment_id=UUID0,
                    entries=[entry] * MAX_HISTORY_ENTRIES,
                    entry_count=10**6,
                    truncated=True,
                ),
            )
        ],
        "GET /availability/check": [
            proxy(
                200,
                Availability(
                    available=False,
                    conflicts=[appt] * MAX_CONFLICTS_SHOWN,
                    conflict_count=1441,
                    truncated=True,
                ),
            )
        ],
        "GET /availability/slots": [
            proxy(
                200,
                FreeSlots(
                    slots=[slot] * MAX_SLOT_CANDIDATES,  # every candidate of a search may be free
                    duration_minutes=1440,
                    step_minutes=1440,
                    searched_to=STAMP,
                    next_from=STAMP,
                ),
            )
        ],
        "GET /webhook-metrics/queue-health": [proxy(200, health)],
        "GET /webhook-metrics/delivery-stats": [proxy(200, stats)],
        "GET /webhook-metrics/recent-failures": [deliveries(with_payload=False)],
        "GET /webhook-metrics/dead-letter-queue": [deliveries(with_payload=True)],
        "GET /webhook-metrics/processing-time": [proxy(200, timing)],
        "GET /booking-metrics": [proxy(200, bookings)],
        "GET /webhook-metrics/delivery": [proxy(200, lookup)],
        # the console's files: each is answered whole
        "GET /console": [console_answer(None)],
        "GET /console/{asset}": [console_answer(name) for name in console_assets()],
        "POST /webhooks/{org_id}": [proxy(202, Accepted(id='"' * 255)), too_large],
        "GET /org/policy": [proxy(200, {"contact_no_overlap": True})],
        "PUT /org/policy": [
            proxy(200, {"contact_no_overlap": True}),
            # contacts already overlapping: at most 100 of them named (org_policy.sql)
            proxy(
                409,
                envelope("contact_conflict", "x" * 100, {"conflicts": [appt.model_dump(mode="json")] * 100}),
            ),
            validation_422(MAX_SMALL_BODY_BYTES),
            too_large,
        ],
        "POST /webhook-metrics/dead-letter-queue/redrive": [
            proxy(
                200,
                m.RedriveResult(
                    redriven=1000,
                    job_ids=['"' * 255] * 1000,
                    not_sent=[m.NotSent(job_id='"' * 255, error=WORST_TEXT_CHAR * m.MAX_NOT_SENT_ERROR_CHARS)]
                    * 1000,
                    next_after=2**63 - 1,
                ),
            ),
            validation_422(m.MAX_REDRIVE_BODY_BYTES),
            too_large,
        ],
        "GET /calendars/{calendar_id}/rules": [proxy(200, rules_view)],
        "GET /calendars/{calendar_id}/rules/history": [proxy(200, rules_history)],
        "PUT /calendars/{calendar_id}/rules": [
            proxy(200, rules_saved),
            validation_422(MAX_RULES_BODY_BYTES),
            too_large,
        ],
    }


def largest_rules_answers(appt: Any) -> tuple[Any, Any, Any]:
    """A calendar's rules at every bound (the longest zone name, every weekday and 400 dates with
    24 intervals each), its history as the database bounds it, and a rule change's answer with
    100 violating appointments as large as the API allows."""
    from datetime import date, timedelta

    from slotguard.models import (
        MAX_DATE_OVERRIDES,
        MAX_INTERVALS_PER_DAY,
        MAX_RULES_HISTORY_BYTES,
        WEEKDAYS,
        CalendarRules,
        CalendarRulesView,
        OpeningInterval,
        RulesHistory,
        RulesHistoryEntry,
        RuleViolation,
        RuleViolations,
        SetRulesResult,
    )

    day = [
        OpeningInterval.model_construct(start=f"{h:02d}:00", end=f"{h:02d}:30")
        for h in range(MAX_INTERVALS_PER_DAY)
    ]
    rules = CalendarRules.model_construct(
        time_zone="America/Argentina/ComodRivadavia",
        weekly_hours=dict.fromkeys(WEEKDAYS, day),
        date_overrides={date(2030, 1, 1) + timedelta(days=n): day for n in range(MAX_DATE_OVERRIDES)},
        buffer_before_minutes=1440,
        buffer_after_minutes=1440,
        min_notice_minutes=525600,
        max_horizon_days=3650,
        min_duration_minutes=1440,
        max_duration_minutes=1440,
        duration_multiple_minutes=1440,
        slot_step_minutes=1440,
    )
    view = CalendarRulesView(
        resource_id=UUID0, version=2**31, rules=rules, updated_at=STAMP, updated_by=WORST_ACTOR
    )
    entry = RulesHistoryEntry(version=2**31, actor=WORST_ACTOR, at=STAMP, rules=rules)
    shown = MAX_RULES_HISTORY_BYTES // len(rules.model_dump_json()) + 1  # the newest always
    history = RulesHistory(resource_id=UUID0, entries=[entry] * shown, entry_count=10**6, truncated=True)
    violation = RuleViolation(appointment=appt, code="duration_not_allowed", message="x" * 200)
    saved = SetRulesResult(calendar=view, violations=RuleViolations(count=10**6, items=[violation] * 100))
    return view, history, saved


def test_the_largest_answer_of_every_route_is_under_lambdas_limit() -> None:
    from slotguard.topology import ROUTES

    answers = largest_answers()
    # Every route is computed
    assert set(answers) == {r.route_key for r in ROUTES}
    sizes = {key: max(lambda_payload_bytes(a) for a in results) for key, results in answers.items()}
    # And each largest answer is under Lambda's 6 MB response payload limit, with room to spare
    over = {key: size for key, size in sizes.items() if size > LAMBDA_MAX_RESPONSE_BYTES * 0.9}
    assert not over, over
    print("\n".join(f"{size:>10,}  {key}" for key, size in sorted(sizes.items(), key=lambda kv: -kv[1])))


def test_the_largest_appointment_is_one_the_api_accepts_and_answers(api: ApiClient) -> None:
    from slotguard.models import MAX_APPOINTMENT_JSON_BYTES, MAX_NOTES_CHARS, MAX_REASON_CHARS

    # Given the computed largest appointment, booked and cancelled through the API
    worst = worst_appointment()
    body = {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": "2030-06-20T10:00:00Z",
        "duration_minutes": 1440,
        "resource_id": str(uuid.uuid4()),
        "notes": WORST_TEXT_CHAR * MAX_NOTES_CHARS,
        "metadata": worst_metadata(),
    }
    appt = api.post("/appointments", json_body=body)
    assert appt.status == 201, appt.body
    cancelled = api.post(
        f"/appointments/{appt.body['id']}/cancel", json_body={"reason": WORST_TEXT_CHAR * MAX_REASON_CHARS}
    )
    assert cancelled.status == 200, cancelled.body
    # When it is read
    res = api.get(f"/appointments/{appt.body['id']}")
    # Then its answer is as large as the computed one (but the timestamps' digits), within the
    # bound the page budget assumes
    answered = len(json.dumps(res.body, separators=(",", ":"), ensure_ascii=False))
    computed = len(worst.model_dump_json())
    assert computed - 200 <= answered <= computed <= MAX_APPOINTMENT_JSON_BYTES


def test_an_oversized_newest_payload_does_not_hide_the_older_ones(
    metrics_admin: ApiClient, admin_conn: Any, org: Org
) -> None:
    # Given three small dead letters, then a newer one whose payload alone is over the 1 MiB budget
    small = json.dumps({"type": "appointment.book", "data": {"n": 1}})
    seed_deliveries(admin_conn, org, [{"status": "dead_letter", "data": small, "error": "boom"}] * 3)
    huge = json.dumps({"type": "appointment.book", "data": {"notes": "x" * 1_200_000}})
    seed_deliveries(admin_conn, org, [{"status": "dead_letter", "data": huge, "error": "boom"}])
    # When an admin lists them
    res = metrics_admin.get("/webhook-metrics/dead-letter-queue", query={"limit": "100"})
    # Then the newest is flagged omitted, and the budget it did not use shows the three older ones
    assert res.status == 200
    items = res.body["items"]
    assert items[0].get("event_data_omitted") is True and "event_data" not in items[0]
    assert [i.get("event_data") for i in items[1:]] == [json.loads(small)] * 3


def test_the_dead_letter_list_does_not_write_out_payloads_it_does_not_show(
    metrics_admin: ApiClient, admin_conn: Any, org: Org
) -> None:
    # Given 40 dead letters stored before the receiver measured payloads as stored: 40,000 numbers
    # 1e308 each, which jsonb writes as 12 MB of digits each
    admin_conn.execute(
        "INSERT INTO slotguard.webhook_delivery_log (org_id, job_id, event_type, event_data, status,"
        " attempts, max_attempts, created_at, last_attempt_at)"
        " SELECT %s, 'num_' || i, 'note', d.payload, 'dead_letter', 3, 3, now(), now()"
        " FROM generate_series(1, 40) i,"
        " (SELECT jsonb_build_object('type', 'note', 'data', jsonb_agg(1e308::numeric)) AS payload"
        "  FROM generate_series(1, 40000)) d",
        (org.org_id,),
    )
    # When an admin lists them
    started = time.monotonic()
    res = metrics_admin.get("/webhook-metrics/dead-letter-queue", query={"limit": "100"})
    took = time.monotonic() - started
    # Then every one is listed with its payload omitted, without writing 480 MB of digits to
    # measure them (that took 2.7 s; the bound leaves room for a loaded machine)
    assert res.status == 200
    assert [i.get("event_data_omitted") for i in res.body["items"]] == [True] * 40
    assert took < 1.0, took


def test_a_422_naming_a_huge_key_of_the_body_stays_small(booking_fn: Any, org: Org) -> None:
    # Given a rules body whose dict key is 900 KB long, under which 25 errors are found (as a
    # member: the body is validated before the role is checked)
    body = json.dumps({"date_overrides": {"k" * 900_000: [{}] * 25}})
    # When it is sent
    answer = ApiClient(booking_fn, org.member).request("PUT", "/calendars/default/rules", raw_body=body)
    # Then it is a 422 whose answer is small: each error's location is cut (it was 45 MB)
    assert answer.status == 422
    size = len(json.dumps(answer.body))
    assert size < 100_000, size
    assert answer.body["error"]["details"]["error_count"] >= 25
