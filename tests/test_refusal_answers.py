"""Each refusal of the booking API answers its whole envelope: the code a client branches on,
the message a person reads, and the details that say what was refused (the id, the field, the
conflicting appointments). Through the booking function, with real payload-2.0 events."""

from __future__ import annotations

import uuid
from types import ModuleType
from typing import Any

import pytest

from slotguard.errors import InvalidRequest
from slotguard.services.booking import decode_cursor
from tests.conftest import ApiClient, Org


@pytest.fixture
def admin(booking_fn: ModuleType, org: Org) -> ApiClient:
    return ApiClient(booking_fn, org.admin)


def booked(api: ApiClient, start: str, contact: str | None = None, calendar: str | None = None) -> Any:
    body: dict[str, Any] = {
        "contact_id": contact or str(uuid.uuid4()),
        "scheduled_at": start,
        "duration_minutes": 60,
    }
    if calendar:
        body["resource_id"] = calendar
    res = api.post("/appointments", json_body=body)
    assert res.status == 201, res.body
    return res.body


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/appointments/{id}", None),
        ("GET", "/appointments/{id}/history", None),
        ("POST", "/appointments/{id}/cancel", {}),
        ("POST", "/appointments/{id}/reschedule", {"scheduled_at": "2031-05-01T10:00:00Z"}),
    ],
)
def test_an_unknown_appointment_is_404_naming_its_id(
    api: ApiClient, method: str, path: str, body: Any
) -> None:
    # Given an id no appointment of the org has, When it is read, cancelled or moved
    unknown = str(uuid.uuid4())
    res = api.request(method, path.format(id=unknown), json_body=body)
    # Then 404, naming it
    assert res.status == 404, res.body
    assert res.body["error"] == {
        "code": "not_found",
        "message": "appointment not found",
        "details": {"id": unknown},
    }


def test_a_member_moving_an_appointment_into_the_past_is_403_saying_only_an_admin_may(
    api: ApiClient,
) -> None:
    # Given an appointment, When a member moves it into the past with backfill
    appointment = booked(api, "2031-05-02T10:00:00Z")
    res = api.post(
        f"/appointments/{appointment['id']}/reschedule",
        json_body={"scheduled_at": "2020-01-01T10:00:00Z", "backfill": True},
    )
    # Then 403, saying who may
    assert res.status == 403, res.body
    assert res.body["error"]["code"] == "forbidden"
    assert res.body["error"]["message"] == "only an admin may move an appointment into the past"


def test_a_slot_search_in_an_unknown_time_zone_is_422_naming_the_query_field(api: ApiClient) -> None:
    res = api.get(
        "/availability/slots",
        query={
            "from": "2031-05-03T00:00:00Z",
            "to": "2031-05-04T00:00:00Z",
            "duration_minutes": 60,
            "time_zone": "Mars/Olympus",
        },
    )
    assert res.status == 422, res.body
    assert res.body["error"]["details"] == {
        "errors": [
            {
                "loc": ["query", "time_zone"],
                "msg": "time_zone must be an IANA time zone, for example Europe/Berlin",
                "type": "value_error",
            }
        ],
        "error_count": 1,
        "truncated": False,
    }
    assert res.body["error"]["message"] == "time_zone must be an IANA time zone, for example Europe/Berlin"


def test_a_cursor_not_given_by_the_api_is_422_naming_the_query_field(api: ApiClient) -> None:
    # Given a cursor no page gave (longer than any the API makes)
    cursor = "not-a-cursor-" + "x" * 200
    # When it is passed back, Then 422 naming the cursor (the request's check: the documented pattern)
    res = api.get("/appointments", query={"cursor": cursor})
    assert res.status == 422, res.body
    assert res.body["error"]["code"] == "validation_error"
    assert [e["loc"] for e in res.body["error"]["details"]["errors"]] == [["query", "cursor"]]


def test_the_services_cursor_check_behind_the_requests_says_to_pass_back_a_next_cursor() -> None:
    # Given the booking service's own check (the backstop behind the request's): a cursor off the
    # pattern, longer than 100 characters
    cursor = "not-a-cursor-" + "x" * 200
    # When decoded, Then it is refused, saying to pass back a next_cursor, quoting 100 characters
    with pytest.raises(InvalidRequest) as refused:
        decode_cursor(cursor)
    assert refused.value.message == "cursor is not valid: pass back a next_cursor"
    assert refused.value.details == {"cursor": cursor[:100]}


def test_switching_the_contact_policy_on_over_overlapping_appointments_is_409_listing_them(
    api: ApiClient, admin: ApiClient
) -> None:
    # Given one contact with two overlapping appointments on two calendars
    contact = str(uuid.uuid4())
    first = booked(api, "2031-05-05T10:00:00Z", contact, str(uuid.uuid4()))
    second = booked(api, "2031-05-05T10:30:00Z", contact, str(uuid.uuid4()))
    # When an admin switches on "a contact never overlaps itself"
    res = admin.request("PUT", "/org/policy", json_body={"contact_no_overlap": True})
    # Then 409, saying to resolve them first, listing both; and the policy stays off
    assert res.status == 409, res.body
    assert res.body["error"]["code"] == "contact_conflict"
    assert res.body["error"]["message"] == (
        "contacts already hold overlapping appointments: resolve them first"
    )
    assert {c["id"] for c in res.body["error"]["details"]["conflicts"]} == {first["id"], second["id"]}
    assert api.get("/org/policy").body["contact_no_overlap"] is False


def test_the_policy_read_is_the_orgs_own(api: ApiClient, admin: ApiClient) -> None:
    # Given an org whose admin switched the contact policy on
    assert admin.request("PUT", "/org/policy", json_body={"contact_no_overlap": True}).status == 200
    # When a member reads it, Then it is on
    assert api.get("/org/policy").body["contact_no_overlap"] is True


def test_the_rules_of_a_calendar_without_any_name_that_calendar(api: ApiClient) -> None:
    # Given a calendar that has no rules, When its rules are read, Then the answer names it
    calendar = str(uuid.uuid4())
    res = api.get(f"/calendars/{calendar}/rules")
    assert res.status == 200, res.body
    assert (res.body["resource_id"], res.body["version"], res.body["rules"]) == (calendar, 0, None)


def test_a_booking_overlapping_its_contacts_other_appointment_is_409_listing_it(
    api: ApiClient, admin: ApiClient
) -> None:
    # Given an org whose contacts never overlap themselves, and a contact's appointment on one calendar
    assert admin.request("PUT", "/org/policy", json_body={"contact_no_overlap": True}).status == 200
    contact = str(uuid.uuid4())
    first = booked(api, "2031-05-06T10:00:00Z", contact, str(uuid.uuid4()))
    # When the contact is booked at an overlapping time on another calendar
    res = api.post(
        "/appointments",
        json_body={
            "contact_id": contact,
            "resource_id": str(uuid.uuid4()),
            "scheduled_at": "2031-05-06T10:30:00Z",
            "duration_minutes": 60,
        },
    )
    # Then 409, saying so, listing the contact's appointment
    assert res.status == 409, res.body
    assert res.body["error"]["code"] == "contact_conflict"
    assert res.body["error"]["message"] == "the contact already has an appointment at that time"
    assert [c["id"] for c in res.body["error"]["details"]["conflicts"]] == [first["id"]]


def test_an_idempotency_key_reused_with_another_body_is_422_saying_so(api: ApiClient) -> None:
    # Given a booking made with an Idempotency-Key
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2031-05-07T10:00:00Z", "duration_minutes": 30}
    assert api.post("/appointments", json_body=body, headers=key).status == 201
    # When the key is sent again with another body, Then 422 naming the reuse
    res = api.post("/appointments", json_body={**body, "duration_minutes": 45}, headers=key)
    assert res.status == 422, res.body
    message = "this Idempotency-Key was used with another request body"
    assert res.body["error"] == {
        "code": "idempotency_key_reused",
        "message": message,
        "details": {
            "errors": [{"loc": [], "msg": message, "type": "idempotency_key_reused"}],
            "error_count": 1,
            "truncated": False,
        },
    }


def test_moving_a_cancelled_appointment_is_409_naming_it(api: ApiClient) -> None:
    # Given a cancelled appointment
    appointment = booked(api, "2031-05-08T10:00:00Z")
    assert api.post(f"/appointments/{appointment['id']}/cancel", json_body={}).status == 200
    # When it is moved, Then 409, saying only a scheduled one can be, naming it
    res = api.post(
        f"/appointments/{appointment['id']}/reschedule", json_body={"scheduled_at": "2031-05-09T10:00:00Z"}
    )
    assert res.status == 409, res.body
    assert res.body["error"] == {
        "code": "not_schedulable",
        "message": "only a scheduled appointment can be rescheduled",
        "details": {"id": appointment["id"]},
    }


def test_a_member_booking_a_backfill_is_403_saying_only_an_admin_may(api: ApiClient) -> None:
    res = api.post(
        "/appointments",
        json_body={
            "contact_id": str(uuid.uuid4()),
            "scheduled_at": "2020-01-01T10:00:00Z",
            "duration_minutes": 30,
            "backfill": True,
        },
    )
    assert res.status == 403, res.body
    assert res.body["error"]["message"] == "only an admin may backfill a past appointment"


@pytest.mark.parametrize("length", [1, 255])
def test_idempotency_keys_of_1_to_255_characters_book(api: ApiClient, length: int) -> None:
    # Given a key of the shortest or the longest length allowed, When a booking is sent with it
    # twice, Then it books, then replays
    key = {"Idempotency-Key": ("k" + uuid.uuid4().hex * 8)[:length]}
    body = {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": f"2031-06-0{1 + length % 7}T10:00:00Z",
        "duration_minutes": 30,
    }
    first = api.post("/appointments", json_body=body, headers=key)
    assert first.status == 201, first.body
    again = api.post("/appointments", json_body=body, headers=key)
    assert (again.status, again.body["id"]) == (201, first.body["id"])


def test_switching_the_policy_while_the_orgs_settings_are_locked_is_503_busy(
    pg: Any, admin: ApiClient, org: Org
) -> None:
    import psycopg

    # Given the org's settings lock held by a transaction in flight (a rules change, a booking)
    with psycopg.connect(pg.admin_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(slotguard.settings_lock_key(%s))", (org.org_id,))
        # When an admin switches the contact policy, waiting past the lock wait's bound
        res = admin.request("PUT", "/org/policy", json_body={"contact_no_overlap": True})
        holder.rollback()
    # Then 503 busy, to retry shortly, and the policy is as it was
    assert res.status == 503, res.body
    assert res.body["error"] == {
        "code": "busy",
        "message": "the calendar is busy, retry shortly",
        "details": {},
    }
    assert admin.get("/org/policy").body == {"contact_no_overlap": False}
