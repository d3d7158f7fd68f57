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
    barrier = threading.Barrier(12, timeout=60)  # a thread failing first fails the test, not hangs it
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


def _future_appointments(pg: PgInstance, org_id: str, n: int, *, marked: bool = False) -> None:
    """n back-to-back future appointments of distinct contacts on the org's default calendar,
    written as an administrator would load them (the booking function is not what is measured)."""
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO slotguard.appointments"
            " (org_id, contact_id, scheduled_at, ends_at, duration_minutes, created_by, contact_exclusive)"
            " SELECT %s, gen_random_uuid(), t, t + interval '15 minutes', 15, 'load', %s"
            " FROM generate_series(timestamptz '2032-01-01', timestamptz '2032-01-01'"
            "   + (%s - 1) * interval '30 minutes', interval '30 minutes') t",
            (org_id, marked, n),
        )


def _marked(pg: PgInstance, org_id: str) -> int:
    with psycopg.connect(pg.admin_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM slotguard.appointments WHERE org_id = %s AND contact_exclusive", (org_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_switching_the_policy_on_over_more_than_20000_future_appointments_is_409_with_the_bound(
    pg: PgInstance, org: Org, api: ApiClient, admin: ApiClient
) -> None:
    # Given an org with 20,001 future appointments (one statement marks each: past 20,000 that
    # statement nears the app role's statement timeout, which no retry would get past)
    _future_appointments(pg, org.org_id, 20_001)
    # When an admin switches "a contact never overlaps itself" on
    res = set_policy(admin, True)
    # Then 409 too_many_appointments with the bound, and nothing changed: still off, none marked
    assert res.status == 409, res.body
    assert res.body["error"]["code"] == "too_many_appointments"
    assert res.body["error"]["details"] == {"max": 20000}
    assert res.body["error"]["message"] == (
        "the switch would touch more than 20000 appointments at once (each one marked for the"
        " contact rule); it is bounded at 20000"
    )
    assert api.get("/org/policy").body == {"contact_no_overlap": False}
    assert _marked(pg, org.org_id) == 0


def test_switching_the_policy_on_over_20000_future_appointments_marks_each(
    pg: PgInstance, org: Org, api: ApiClient, admin: ApiClient
) -> None:
    # Given an org with exactly 20,000 future appointments, When the policy is switched on
    _future_appointments(pg, org.org_id, 20_000)
    res = set_policy(admin, True)
    # Then it is on and each is marked for the contact rule
    assert res.status == 200, res.body
    assert api.get("/org/policy").body == {"contact_no_overlap": True}
    assert _marked(pg, org.org_id) == 20_000


def test_switching_the_policy_off_over_more_than_50000_marked_appointments_is_409_with_the_bound(
    pg: PgInstance, org: Org, api: ApiClient, admin: ApiClient
) -> None:
    # Given an org whose policy is on, with 50,001 appointments booked under it
    assert set_policy(admin, True).status == 200
    _future_appointments(pg, org.org_id, 50_001, marked=True)
    # When an admin switches it off, Then 409 with the bound, and it stays on, every mark kept
    res = set_policy(admin, False)
    assert res.status == 409, res.body
    assert (res.body["error"]["code"], res.body["error"]["details"]) == (
        "too_many_appointments",
        {"max": 50000},
    )
    assert res.body["error"]["message"] == (
        "the switch would touch more than 50000 appointments at once (each one unmarked for the"
        " contact rule); it is bounded at 50000"
    )
    assert api.get("/org/policy").body == {"contact_no_overlap": True}
    assert _marked(pg, org.org_id) == 50_001
