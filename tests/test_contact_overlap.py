"""A contact in two places at once (issue 20, item 3b): an org policy, off by default; when on,
a contact's active appointments never overlap across the org's calendars, under a lock and a
constraint that holds whatever path wrote the row; refusals are 409 naming the appointment."""

from __future__ import annotations

import threading
import uuid
from types import ModuleType
from typing import Any

import psycopg
import pytest

from tests.conftest import ApiClient, Org, PgInstance


@pytest.fixture
def admin(booking_fn: ModuleType, org: Org) -> ApiClient:
    return ApiClient(booking_fn, org.admin)


def book(client: ApiClient, contact: str, start: str, resource: str | None = None, minutes: int = 60) -> Any:
    body: dict[str, Any] = {"contact_id": contact, "scheduled_at": start, "duration_minutes": minutes}
    if resource:
        body["resource_id"] = resource
    return client.post("/appointments", json_body=body)


def set_policy(client: ApiClient, on: bool) -> Any:
    return client.request("PUT", "/org/policy", json_body={"contact_no_overlap": on})


def test_by_default_a_contact_may_be_in_two_places_at_once(api: ApiClient) -> None:
    contact = str(uuid.uuid4())
    assert api.get("/org/policy").body == {"contact_no_overlap": False}
    assert book(api, contact, "2031-03-03T10:00:00Z", str(uuid.uuid4())).status == 201
    assert book(api, contact, "2031-03-03T10:30:00Z").status == 201


def test_with_the_policy_on_a_contacts_second_place_is_409_naming_the_first(
    admin: ApiClient, api: ApiClient
) -> None:
    # Given the org's policy on, and a contact booked on resource X at 10:00-11:00
    assert set_policy(admin, True).status == 200
    contact, room = str(uuid.uuid4()), str(uuid.uuid4())
    first = book(api, contact, "2031-03-03T10:00:00Z", room).body
    # When the same contact books the default calendar at 10:30
    res = book(api, contact, "2031-03-03T10:30:00Z")
    # Then it is 409 naming the contact's appointment
    assert res.status == 409, res.body
    assert res.body["error"]["code"] == "contact_conflict"
    assert [c["id"] for c in res.body["error"]["details"]["conflicts"]] == [first["id"]]
    # And another contact, or the same contact at another time, books fine
    assert book(api, str(uuid.uuid4()), "2031-03-03T10:30:00Z").status == 201
    assert book(api, contact, "2031-03-03T11:00:00Z", str(uuid.uuid4())).status == 201
    # And a reschedule onto the contact's other appointment is refused the same way
    other = book(api, contact, "2031-03-04T10:00:00Z", str(uuid.uuid4())).body
    moved = api.post(
        f"/appointments/{other['id']}/reschedule", json_body={"scheduled_at": "2031-03-03T10:15:00Z"}
    )
    assert moved.status == 409
    assert moved.body["error"]["code"] == "contact_conflict"


def test_only_an_admin_sets_the_policy(api: ApiClient) -> None:
    assert set_policy(api, True).status == 403
    assert api.get("/org/policy").body == {"contact_no_overlap": False}


def test_the_constraint_holds_for_a_writer_that_skips_the_function(
    admin: ApiClient, api: ApiClient, pg: PgInstance, org: Org
) -> None:
    set_policy(admin, True)
    contact = str(uuid.uuid4())
    book(api, contact, "2031-03-03T10:00:00Z", str(uuid.uuid4()))
    with psycopg.connect(pg.admin_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT set_config('slotguard.org_id', %s, true)", (org.org_id,))
        conn.execute("SET LOCAL ROLE slotguard_owner")
        with pytest.raises(psycopg.errors.ExclusionViolation):
            conn.execute(
                "INSERT INTO slotguard.appointments (org_id, contact_id, resource_id, scheduled_at, ends_at,"
                " duration_minutes, created_by, contact_exclusive)"
                " VALUES (%s, %s, %s, '2031-03-03 10:30+00', '2031-03-03 11:00+00', 30, 'rogue', true)",
                (org.org_id, contact, str(uuid.uuid4())),
            )


def test_concurrent_bookings_of_one_contact_on_many_calendars_leave_one(
    admin: ApiClient, booking_fn: ModuleType, org: Org
) -> None:
    # Given the policy on, and one contact booked at once on 12 calendars, 10:00-11:00
    set_policy(admin, True)
    contact = str(uuid.uuid4())
    barrier = threading.Barrier(12)
    results: list[int] = []

    def attempt() -> None:
        from slotguard.config import DatabaseSettings
        from slotguard.db.booking_repository import BookingRepository
        from slotguard.db.connection import Database
        from slotguard.errors import DomainError
        from slotguard.models import Actor, BookRequest
        from slotguard.services.booking import BookingService

        db = Database(DatabaseSettings(database_url=__import__("os").environ["DATABASE_URL"]))
        service = BookingService(BookingRepository(db, 10_000))
        request = BookRequest.model_validate(
            {
                "contact_id": contact,
                "scheduled_at": "2031-03-05T10:00:00Z",
                "duration_minutes": 60,
                "resource_id": str(uuid.uuid4()),
            }
        )
        barrier.wait()
        try:
            service.book(Actor(org_id=uuid.UUID(org.org_id), subject="user:x"), request)
            results.append(201)
        except DomainError as exc:
            results.append(exc.status_code)
        finally:
            db.close()

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Then exactly one is booked, every other is 409
    assert sorted(results) == [201] + [409] * 11


def test_turning_the_policy_on_with_overlaps_already_booked_is_409_listing_them(
    admin: ApiClient, api: ApiClient
) -> None:
    contact = str(uuid.uuid4())
    a = book(api, contact, "2031-03-03T10:00:00Z", str(uuid.uuid4())).body
    b = book(api, contact, "2031-03-03T10:30:00Z").body
    res = set_policy(admin, True)
    assert res.status == 409, res.body
    assert res.body["error"]["code"] == "contact_conflict"
    assert {c["id"] for c in res.body["error"]["details"]["conflicts"]} == {a["id"], b["id"]}
    assert api.get("/org/policy").body == {"contact_no_overlap": False}
