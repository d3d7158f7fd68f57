"""The booking API's answers to the letter: the page of appointments (its filters, where it ends,
the byte bound that cuts a page of large appointments and continues it), the rules' 422s naming
the field, the 409's message, a calendar's own rules history, a busy rules write, the org policy
of a fresh container. Through the booking function, with real payload-2.0 events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import psycopg
import pytest

from slotguard.models import MAX_PAGE_BYTES, Appointment
from slotguard_local.functions import load_function
from tests.conftest import ApiClient, Org, PgInstance


@pytest.fixture
def admin(booking_fn: ModuleType, org: Org) -> ApiClient:
    return ApiClient(booking_fn, org.admin)


@pytest.fixture
def fresh_booking_fn(pg: PgInstance, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A new booking container (its services built at its cold start), waiting 200 ms for a lock."""
    monkeypatch.setenv("BOOKING_LOCK_WAIT_MS", "200")
    module = load_function("booking")
    yield module
    module.repository._db.close()


def book(api: ApiClient, start: str, minutes: int = 30, resource: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"contact_id": str(uuid.uuid4()), "scheduled_at": start}
    body["duration_minutes"] = minutes
    if resource:
        body["resource_id"] = resource
    res = api.post("/appointments", json_body=body)
    assert res.status == 201, res.body
    return res.body


def cursor_of(appointment: dict[str, Any]) -> str:
    """The documented cursor of an appointment starting on a whole second."""
    start = datetime.fromisoformat(appointment["scheduled_at"].replace("Z", "+00:00"))
    return f"{int(start.timestamp()) * 1_000_000}.{uuid.UUID(appointment['id']).hex}"


def json_bytes(item: dict[str, Any]) -> int:
    """An appointment's size in a page's answer (the page writes it as its model does)."""
    return len(Appointment.model_validate(item).model_dump_json())


# --- the page of appointments --------------------------------------------------------------------


def test_a_page_is_filtered_by_from_to_and_calendar(api: ApiClient) -> None:
    # Given a calendar's appointment ending at `from`, one inside the range, one starting after
    # `to`, and another calendar's appointment inside the range
    calendar, other = str(uuid.uuid4()), str(uuid.uuid4())
    book(api, "2031-02-03T09:00:00Z", 30, calendar)
    inside = book(api, "2031-02-03T10:00:00Z", 30, calendar)
    book(api, "2031-02-03T12:00:00Z", 30, calendar)
    book(api, "2031-02-03T10:00:00Z", 30, other)
    # When the calendar's appointments from 09:30 to 11:00 are listed
    res = api.get(
        "/appointments",
        query={"from": "2031-02-03T09:30:00Z", "to": "2031-02-03T11:00:00Z", "resource_id": calendar},
    )
    # Then the page is that one appointment, and the last page
    assert res.status == 200, res.body
    assert res.body == {"items": [inside], "next_cursor": None}


def test_a_page_holding_exactly_the_last_appointments_has_no_next_cursor(api: ApiClient) -> None:
    # Given two appointments
    first = book(api, "2031-02-04T10:00:00Z")
    second = book(api, "2031-02-04T11:00:00Z")
    # When they are listed two at a time, Then the one page holds both and is the last
    res = api.get("/appointments", query={"limit": "2"})
    assert res.status == 200, res.body
    assert res.body == {"items": [first, second], "next_cursor": None}
    # And one at a time, the first page continues after the first
    res = api.get("/appointments", query={"limit": "1"})
    assert res.body == {"items": [first], "next_cursor": cursor_of(first)}


def test_a_page_ends_with_the_appointment_that_brings_it_to_exactly_max_page_bytes(
    api: ApiClient, admin_conn: Any, org: Org
) -> None:
    # Given 120 back-to-back appointments with metadata near its 8 KiB bound (written as the
    # owner: setup only), a page's worth within 2 MiB
    rows, day = 120, datetime(2031, 3, 3, tzinfo=UTC)
    stamp = datetime(2031, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    with admin_conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO slotguard.appointments (org_id, contact_id, scheduled_at, ends_at,"
            " duration_minutes, created_by, notes, metadata, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, 1, 'setup', '', %s, %s, %s)",
            [
                (
                    org.org_id,
                    uuid.uuid4(),
                    day + timedelta(minutes=i),
                    day + timedelta(minutes=i + 1),
                    psycopg.types.json.Jsonb({"k": "m" * 8000}),
                    stamp,
                    stamp,
                )
                for i in range(rows)
            ],
        )
    unpadded = api.get("/appointments", query={"limit": "200"}).body
    assert len(unpadded["items"]) == rows and unpadded["next_cursor"] is None
    sizes = [json_bytes(item) for item in unpadded["items"]]
    # And the first `full` of them padded (their notes: "\x01" is 6 bytes of JSON, "a" 1) so
    # that together they are exactly MAX_PAGE_BYTES of JSON, the rest as they were
    full = next(k for k in range(1, rows) if MAX_PAGE_BYTES - sum(sizes[:k]) <= k * 11_000)
    need = MAX_PAGE_BYTES - sum(sizes[:full])
    pads = [need // full + (1 if i < need % full else 0) for i in range(full)]
    with admin_conn.cursor() as cur:
        cur.executemany(
            "UPDATE slotguard.appointments SET notes = %s WHERE id = %s",
            [
                ("\x01" * (pad // 6) + "a" * (pad % 6), item["id"])
                for pad, item in zip(pads, unpadded["items"], strict=False)
            ],
        )
    ids = [item["id"] for item in unpadded["items"]]
    # When they are listed 200 at a time
    res = api.get("/appointments", query={"limit": "200"})
    # Then the page holds the `full` appointments (exactly MAX_PAGE_BYTES: not past the bound),
    # and its cursor continues after the last of them
    assert res.status == 200, res.body
    page = res.body
    assert [item["id"] for item in page["items"]] == ids[:full]
    assert sum(json_bytes(item) for item in page["items"]) == MAX_PAGE_BYTES
    assert page["next_cursor"] == cursor_of(page["items"][-1])
    # And the next page is the rest
    rest = api.get("/appointments", query={"limit": "200", "cursor": page["next_cursor"]}).body
    assert [item["id"] for item in rest["items"]] == ids[full:]
    assert rest["next_cursor"] is None


# --- refusals ------------------------------------------------------------------------------------

OFFICE_HOURS = {
    "weekly_hours": {
        day: [{"start": "09:00", "end": "17:00"}]
        for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    },
    "min_duration_minutes": 15,
    "max_duration_minutes": 60,
    "duration_multiple_minutes": 15,
}


@pytest.mark.parametrize(
    ("start", "minutes", "code", "field", "message"),
    [
        (
            "2031-04-01T10:00:00Z",
            20,
            "duration_not_allowed",
            "duration_minutes",
            "this calendar does not take appointments of this duration",
        ),
        (
            "2031-04-01T20:00:00Z",
            30,
            "outside_hours",
            "scheduled_at",
            "the appointment is outside the calendar's hours",
        ),
    ],
    ids=["duration", "hours"],
)
def test_a_rule_refusal_is_a_422_naming_its_field_and_the_rules_version(
    api: ApiClient, admin: ApiClient, start: str, minutes: int, code: str, field: str, message: str
) -> None:
    # Given the default calendar open 09:00-17:00 UTC every day, for 15..60 minutes in steps of 15
    saved = admin.request("PUT", "/calendars/default/rules", json_body=OFFICE_HOURS)
    assert saved.status == 200, saved.body
    # When a member books a duration it does not take, or outside its hours
    res = api.post(
        "/appointments",
        json_body={"contact_id": str(uuid.uuid4()), "scheduled_at": start, "duration_minutes": minutes},
    )
    # Then 422 with the rule's code and message, naming the field and the rules' version
    assert res.status == 422, res.body
    assert res.body == {
        "error": {
            "code": code,
            "message": message,
            "details": {
                "errors": [{"loc": ["body", field], "msg": message, "type": code}],
                "error_count": 1,
                "truncated": False,
                "rules_version": 1,
            },
        }
    }


def test_an_overlapping_booking_is_a_409_saying_so_and_listing_the_overlap(api: ApiClient) -> None:
    # Given an appointment 10:00-10:30
    first = book(api, "2031-04-02T10:00:00Z")
    # When another is booked at 10:15
    res = api.post(
        "/appointments",
        json_body={
            "contact_id": str(uuid.uuid4()),
            "scheduled_at": "2031-04-02T10:15:00Z",
            "duration_minutes": 30,
        },
    )
    # Then 409, saying the slot overlaps, listing the first, whole
    assert res.status == 409, res.body
    assert res.body == {
        "error": {
            "code": "slot_conflict",
            "message": "the slot overlaps an existing appointment",
            "details": {"conflicts": [first], "conflict_count": 1, "truncated": False},
        }
    }


@pytest.mark.parametrize("method", ["GET", "PUT"])
@pytest.mark.parametrize(
    "calendar_id",
    ["DEFAULT", "default%0A", "default%20", "{00000000-0000-0000-0000-000000000001}", "0" * 32],
)
def test_a_calendar_id_neither_default_nor_a_uuid_is_refused_by_the_path_pattern(
    admin: ApiClient, method: str, calendar_id: str
) -> None:
    # Given calendar ids `default` is not and Python's UUID() would read or refuse (the service's
    # own check, behind the path's, is never reached: any id matching the pattern is a UUID)
    # When one is used in a rules path
    body = {"time_zone": "UTC"} if method == "PUT" else None
    res = admin.request(method, f"/calendars/{calendar_id}/rules", json_body=body)
    # Then the path's check refuses it, naming the path parameter
    assert res.status == 422, res.body
    assert res.body["error"]["code"] == "validation_error"
    assert [(e["loc"], e["type"]) for e in res.body["error"]["details"]["errors"]] == [
        (["path", "calendar_id"], "string_pattern_mismatch")
    ]


# --- calendars' rules ----------------------------------------------------------------------------


def test_a_calendars_rules_history_is_its_own_not_the_default_calendars(
    admin: ApiClient, api: ApiClient
) -> None:
    # Given a resource calendar whose rules were set twice, and the default calendar's once
    calendar = str(uuid.uuid4())
    for notice in (0, 30):
        put = admin.request("PUT", f"/calendars/{calendar}/rules", json_body={"min_notice_minutes": notice})
        assert put.status == 200, put.body
    put = admin.request("PUT", "/calendars/default/rules", json_body={"min_notice_minutes": 99})
    assert put.status == 200, put.body
    # When a member reads the resource calendar's history
    res = api.get(f"/calendars/{calendar}/rules/history")
    # Then it names that calendar and holds its two versions, oldest first
    assert res.status == 200, res.body
    assert res.body["resource_id"] == calendar
    assert (res.body["entry_count"], res.body["truncated"]) == (2, False)
    versions = [(e["version"], e["rules"]["min_notice_minutes"]) for e in res.body["entries"]]
    assert versions == [(1, 0), (2, 30)]


def test_a_rules_write_while_the_orgs_settings_are_locked_is_503_busy(
    fresh_booking_fn: ModuleType, pg: PgInstance, org: Org
) -> None:
    admin = ApiClient(fresh_booking_fn, org.admin)
    # Given the org's settings lock held by a transaction in flight
    with psycopg.connect(pg.admin_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(slotguard.settings_lock_key(%s))", (org.org_id,))
        # When an admin sets the default calendar's rules, waiting past the lock wait's bound
        res = admin.request("PUT", "/calendars/default/rules", json_body={"min_notice_minutes": 5})
        holder.rollback()
    # Then 503 busy, saying to retry shortly, with Retry-After
    assert res.status == 503, res.body
    assert res.body == {
        "error": {"code": "busy", "message": "the calendar is busy, retry shortly", "details": {}}
    }
    assert res.headers["Retry-After"] == "1"
    # And nothing was saved
    assert admin.get("/calendars/default/rules").body["version"] == 0


# --- the org policy ------------------------------------------------------------------------------


def test_a_fresh_containers_policy_reads_and_writes_the_orgs_policy(
    fresh_booking_fn: ModuleType, org: Org
) -> None:
    # Given a booking container just started (its services built at its cold start)
    admin = ApiClient(fresh_booking_fn, org.admin)
    # When the org's policy is read, switched on, and read again
    before = admin.get("/org/policy")
    saved = admin.request("PUT", "/org/policy", json_body={"contact_no_overlap": True})
    after = admin.get("/org/policy")
    # Then it was off, is saved on, and reads on
    assert (before.status, before.body) == (200, {"contact_no_overlap": False})
    assert (saved.status, saved.body) == (200, {"contact_no_overlap": True})
    assert (after.status, after.body) == (200, {"contact_no_overlap": True})
