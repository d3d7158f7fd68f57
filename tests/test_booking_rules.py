"""Calendar rules enforced in the booking transaction (issue 20, item 2): hours in the calendar's
time zone, notice, horizon, durations and buffers, for book, reschedule and webhook bookings,
under the same locks as overlaps; rule changes and bookings serialize."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.conftest import ApiClient, Org, PgInstance

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@pytest.fixture
def admin(booking_fn: ModuleType, org: Org) -> ApiClient:
    return ApiClient(booking_fn, org.admin)


def put_rules(client: ApiClient, rules: dict[str, Any], calendar: str = "default") -> Any:
    res = client.request("PUT", f"/calendars/{calendar}/rules", json_body=rules)
    assert res.status == 200, res.body
    return res.body


def book(client: ApiClient, start: str, minutes: int = 30, **extra: Any) -> Any:
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": start, "duration_minutes": minutes, **extra}
    return client.post("/appointments", json_body=body)


def next_weekday(weekday: int, at: str, tz: str = "UTC", weeks: int = 2) -> str:
    """A future local date of that ISO weekday (1 = Monday), at local wall time `at`, in UTC."""
    today = datetime.now(ZoneInfo(tz)).date() + timedelta(weeks=weeks)
    day = today + timedelta(days=(weekday - today.isoweekday()) % 7)
    hour, minute = map(int, at.split(":"))
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(tz))
    return local.astimezone(UTC).isoformat().replace("+00:00", "Z")


BERLIN_OFFICE = {
    "time_zone": "Europe/Berlin",
    "weekly_hours": {day: [{"start": "09:00", "end": "17:00"}] for day in WEEKDAYS[:5]},
}


def test_a_booking_outside_the_calendars_hours_is_422_outside_hours(admin: ApiClient, api: ApiClient) -> None:
    # Given the default calendar open 09:00-17:00 Berlin time on weekdays
    version = put_rules(admin, BERLIN_OFFICE)["calendar"]["version"]
    # When a member books a Monday at 08:30 Berlin time, a Sunday at 10:00, and across 17:00
    for start, minutes in (
        (next_weekday(1, "08:30", "Europe/Berlin"), 30),
        (next_weekday(7, "10:00", "Europe/Berlin"), 30),
        (next_weekday(2, "16:45", "Europe/Berlin"), 30),
    ):
        res = book(api, start, minutes)
        # Then each is refused with the rule's code, naming the field and the rules' version
        assert res.status == 422, (start, res.body)
        assert res.body["error"]["code"] == "outside_hours"
        assert res.body["error"]["details"]["rules_version"] == version
        assert res.body["error"]["details"]["errors"][0]["loc"] == ["body", "scheduled_at"]
    # And inside the hours it books, recording the rules' version
    res = book(api, next_weekday(1, "09:00", "Europe/Berlin"), 60)
    assert res.status == 201, res.body
    assert res.body["rules_version"] == version


def test_a_calendar_without_rules_books_as_before(api: ApiClient) -> None:
    res = book(api, next_weekday(7, "03:00"))
    assert res.status == 201, res.body
    assert res.body["rules_version"] is None


def test_notice_horizon_and_durations_each_have_their_code(admin: ApiClient, api: ApiClient) -> None:
    # Given a calendar with a day's notice, a 30-day horizon, 15..60 minutes in steps of 15
    put_rules(
        admin,
        {
            "min_notice_minutes": 24 * 60,
            "max_horizon_days": 30,
            "min_duration_minutes": 15,
            "max_duration_minutes": 60,
            "duration_multiple_minutes": 15,
        },
    )
    soon = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0).isoformat()
    far = (datetime.now(UTC) + timedelta(days=45)).replace(microsecond=0).isoformat()
    fine = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    cases = [
        (soon, 30, "too_soon"),
        (far, 30, "too_far"),
        (fine, 20, "duration_not_allowed"),
        (fine, 75, "duration_not_allowed"),
        (fine, 10, "duration_not_allowed"),
    ]
    for start, minutes, code in cases:
        res = book(api, start, minutes)
        assert res.status == 422, (start, minutes, res.body)
        assert res.body["error"]["code"] == code
    assert book(api, fine, 45).status == 201


def test_buffers_keep_appointments_apart_whatever_calendar_times_they_touch(
    admin: ApiClient, api: ApiClient
) -> None:
    # Given 10 minutes before and 5 after each appointment
    put_rules(admin, {"buffer_before_minutes": 10, "buffer_after_minutes": 5})
    first = book(api, "2030-01-07T10:00:00Z", 60)
    assert first.status == 201
    # When another ends 10 minutes before it, or starts 10 minutes after it
    for start, minutes in (("2030-01-07T09:20:00Z", 30), ("2030-01-07T11:10:00Z", 30)):
        res = book(api, start, minutes)
        # Then the buffers collide (its after + the first's before = 15; the first's after + its before = 15)
        assert res.status == 409, (start, res.body)
        assert [c["id"] for c in res.body["error"]["details"]["conflicts"]] == [first.body["id"]]
    # And 15 minutes apart on either side fits
    assert book(api, "2030-01-07T09:15:00Z", 30).status == 201
    assert book(api, "2030-01-07T11:15:00Z", 30).status == 201


def test_the_exclusion_constraint_covers_padded_ranges_whatever_path_wrote_them(
    admin: ApiClient, api: ApiClient, pg: PgInstance, org: Org
) -> None:
    # Given an appointment booked with buffers (10 before, 5 after)
    put_rules(admin, {"buffer_before_minutes": 10, "buffer_after_minutes": 5})
    first = book(api, "2030-01-07T10:00:00Z", 60).body
    # When a writer that skips the booking function inserts a row whose time touches the first's buffer
    with psycopg.connect(pg.admin_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT set_config('slotguard.org_id', %s, true)", (org.org_id,))
        conn.execute("SET LOCAL ROLE slotguard_owner")
        # Then the database refuses it
        with pytest.raises(psycopg.errors.ExclusionViolation):
            conn.execute(
                "INSERT INTO slotguard.appointments (org_id, contact_id, scheduled_at, ends_at,"
                " duration_minutes, created_by)"
                " VALUES (%s, %s, '2030-01-07 11:00+00', '2030-01-07 11:30+00', 30, 'rogue')",
                (org.org_id, str(uuid.uuid4())),
            )
    assert first["status"] == "scheduled"


def test_reschedule_follows_the_rules(admin: ApiClient, api: ApiClient) -> None:
    put_rules(admin, BERLIN_OFFICE)
    booked = book(api, next_weekday(3, "10:00", "Europe/Berlin"), 30).body
    res = api.post(
        f"/appointments/{booked['id']}/reschedule",
        json_body={"scheduled_at": next_weekday(6, "10:00", "Europe/Berlin")},
    )
    assert res.status == 422, res.body
    assert res.body["error"]["code"] == "outside_hours"
    assert api.get(f"/appointments/{booked['id']}").body["status"] == "scheduled"
    moved = api.post(
        f"/appointments/{booked['id']}/reschedule",
        json_body={"scheduled_at": next_weekday(4, "16:30", "Europe/Berlin")},
    )
    assert moved.status == 200, moved.body


def test_a_rule_change_lists_the_future_appointments_it_breaks_and_changes_none(
    admin: ApiClient, api: ApiClient
) -> None:
    # Given appointments at 08:00, 10:00 and 10:40 UTC on a future Monday, on a calendar without rules
    times = [next_weekday(1, at) for at in ("08:00", "10:00", "10:40")]
    ids = [book(api, t, 30).body["id"] for t in times]
    # When an admin opens the calendar 09:00-17:00 with 15 minutes of buffer after each appointment
    answer = put_rules(
        admin,
        {
            "weekly_hours": {day: [{"start": "09:00", "end": "17:00"}] for day in WEEKDAYS},
            "buffer_after_minutes": 15,
        },
    )
    # Then the answer lists the ones that break the new rules, with their count
    violations = answer["violations"]
    assert violations["count"] == 3
    assert [(v["appointment"]["id"], v["code"]) for v in violations["items"]] == [
        (ids[0], "outside_hours"),
        (ids[1], "buffer_overlap"),
        (ids[2], "buffer_overlap"),
    ]
    # And none of them was changed
    assert all(api.get(f"/appointments/{i}").body["status"] == "scheduled" for i in ids)


def _satisfies(rules: dict[str, Any], start: datetime, minutes: int) -> bool:
    """The rules used by the race test: weekly hours in UTC, nothing else."""
    hours = rules["weekly_hours"].get(WEEKDAYS[start.weekday()], [])
    end = start + timedelta(minutes=minutes)
    for interval in hours:
        opens = start.replace(hour=int(interval["start"][:2]), minute=int(interval["start"][3:]))
        closes = start.replace(hour=0, minute=0) + timedelta(
            hours=int(interval["end"][:2]), minutes=int(interval["end"][3:])
        )
        if opens <= start and end <= closes:
            return True
    return False


def test_rule_changes_and_bookings_serialize(pg: PgInstance, admin: ApiClient, org: Org) -> None:
    from slotguard.config import DatabaseSettings
    from slotguard.db.booking_repository import BookingRepository
    from slotguard.db.connection import Database
    from slotguard.errors import Busy, DomainError
    from slotguard.models import Actor, BookRequest, CalendarRules
    from slotguard.services.booking import BookingService, CalendarService

    # Given a calendar whose rules flip between mornings and afternoons (UTC)
    morning = {"weekly_hours": {day: [{"start": "08:00", "end": "12:00"}] for day in WEEKDAYS}}
    afternoon = {"weekly_hours": {day: [{"start": "12:00", "end": "16:00"}] for day in WEEKDAYS}}
    put_rules(admin, morning)
    monday = date.fromisoformat(next_weekday(1, "00:00")[:10])
    starts = [
        datetime(monday.year, monday.month, monday.day, 8, tzinfo=UTC) + timedelta(days=d, minutes=20 * i)
        for d in range(4)
        for i in range(24)
    ]
    member = Actor(org_id=uuid.UUID(org.org_id), subject="user:racer")
    owner = Actor(org_id=uuid.UUID(org.org_id), subject="user:rules", role="admin")
    bookers, changers = 8, 2
    barrier = threading.Barrier(bookers + changers, timeout=60)  # a thread failing first fails the test
    outcomes: list[str] = []
    errors: list[BaseException] = []
    databases: list[Database] = []

    def repository() -> BookingRepository:
        db = Database(DatabaseSettings(database_url=pg.app_url))
        databases.append(db)
        db._connection()  # open before the race
        return BookingRepository(db, 10_000)

    def booker(mine: list[datetime]) -> None:
        service = BookingService(repository())
        barrier.wait()
        try:
            for start in mine:
                request = BookRequest(contact_id=uuid.uuid4(), scheduled_at=start, duration_minutes=20)
                try:
                    service.book(member, request)
                    outcomes.append("created")
                except (Busy, DomainError) as exc:
                    outcomes.append(type(exc).__name__)
        except BaseException as exc:
            errors.append(exc)

    def changer(first: int) -> None:
        service = CalendarService(repository())
        barrier.wait()
        try:
            for i in range(first, first + 20):
                rules = afternoon if i % 2 == 0 else morning
                service.set_rules(owner, "default", CalendarRules.model_validate(rules))
        except BaseException as exc:
            errors.append(exc)

    # When 8 bookers and 2 rule changers, each on its own connection, race
    threads = [threading.Thread(target=booker, args=(starts[i::bookers],)) for i in range(bookers)]
    threads += [threading.Thread(target=changer, args=(i,)) for i in range(changers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for db in databases:
        db.close()
    assert errors == []
    assert set(outcomes) <= {"created", "OutsideHours", "SlotConflict", "Busy"}, set(outcomes)
    # Then every committed appointment records a version and satisfies that version's rules
    history = {
        e["version"]: e["rules"] for e in admin.get("/calendars/default/rules/history").body["entries"]
    }
    assert len(history) == 1 + 20 * changers
    booked = admin.get("/appointments", query={"status": "scheduled", "limit": 200}).body["items"]
    assert outcomes.count("created") == len(booked) > 0
    versions = set()
    for appt in booked:
        rules = history[appt["rules_version"]]
        versions.add(appt["rules_version"])
        start = datetime.fromisoformat(appt["scheduled_at"].replace("Z", "+00:00"))
        assert _satisfies(rules, start, appt["duration_minutes"]), (appt, rules)
    assert len(versions) > 1  # the race did interleave bookings with rule changes


def test_a_booking_waits_for_a_rule_change_in_progress_and_answers_by_the_new_rules(
    pg: PgInstance, admin: ApiClient, api: ApiClient, org: Org
) -> None:
    import json

    # Given a calendar open in the mornings (version 1)
    morning = {"weekly_hours": {day: [{"start": "08:00", "end": "12:00"}] for day in WEEKDAYS}}
    afternoon = {"weekly_hours": {day: [{"start": "12:00", "end": "16:00"}] for day in WEEKDAYS}}
    put_rules(admin, morning)
    # And a rule change to afternoons (version 2) in progress: made, not yet committed
    with psycopg.connect(pg.app_url) as change:
        answer = change.execute(
            "SELECT slotguard.set_calendar_rules(%s, 'user:rules', NULL, %s)",
            (org.org_id, json.dumps(afternoon)),
        ).fetchone()
        assert answer is not None and answer[0]["calendar"]["version"] == 2
        # When a member books a morning slot meanwhile
        result: list[Any] = []
        booking = threading.Thread(target=lambda: result.append(book(api, next_weekday(1, "09:00"), 30)))
        booking.start()
        booking.join(1.0)
        # Then the booking waits for the change (it cannot commit against the rules being replaced)
        assert booking.is_alive() and result == []
        change.commit()
    booking.join(10)
    # And once the change commits it answers by the new rules, naming their version
    assert result[0].status == 422, result[0].body
    assert result[0].body["error"]["code"] == "outside_hours"
    assert result[0].body["error"]["details"]["rules_version"] == 2


def test_a_webhook_booking_outside_the_hours_is_completed_as_rejected_with_the_rules_code(
    pipeline: Any, booking_fn: ModuleType
) -> None:
    from tests.conftest import new_org

    # Given an org whose default calendar opens 09:00-17:00 UTC
    org_id, secret = pipeline.new_org()
    rules_admin = ApiClient(booking_fn, {**new_org().admin, "org_id": org_id})
    put_rules(rules_admin, {"weekly_hours": {day: [{"start": "09:00", "end": "17:00"}] for day in WEEKDAYS}})
    # When a signed webhook books 07:00, and another 10:00
    outside = pipeline.send(
        org_id,
        secret,
        "appointment.book",
        {"contact_id": str(uuid.uuid4()), "scheduled_at": next_weekday(2, "07:00"), "duration_minutes": 30},
    )
    inside = pipeline.send(
        org_id,
        secret,
        "appointment.book",
        {"contact_id": str(uuid.uuid4()), "scheduled_at": next_weekday(2, "10:00"), "duration_minutes": 30},
    )
    pipeline.drain(
        pipeline.event_source(),
        lambda: sum(r["status"] == "completed" for r in pipeline.rows(org_id)) >= 2,
    )
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    # Then the first is a completed delivery refused by the rule (no retry), the second is booked
    assert (rows[outside]["outcome"], rows[outside]["attempts"]) == ("rejected", 1)
    assert rows[outside]["outcome_detail"]["code"] == "outside_hours"
    assert rows[outside]["outcome_detail"]["rules_version"] == 1
    assert rows[inside]["outcome"] == "applied"
    [appointment] = pipeline.appointments(org_id)
    assert appointment["rules_version"] == 1


def test_availability_and_slots_follow_hours_buffers_and_notice(admin: ApiClient, api: ApiClient) -> None:
    # Given a calendar open 09:00-12:00 UTC with 15-minute buffers, and 10:00-10:30 booked
    put_rules(
        admin,
        {
            "weekly_hours": {day: [{"start": "09:00", "end": "12:00"}] for day in WEEKDAYS},
            "buffer_before_minutes": 15,
            "buffer_after_minutes": 15,
        },
    )
    day = next_weekday(3, "00:00")[:10]
    assert book(api, f"{day}T10:00:00Z", 30).status == 201
    # When a member asks for 30-minute slots every 15 minutes over the whole day
    res = api.get(
        "/availability/slots",
        query={
            "from": f"{day}T00:00:00Z",
            "to": f"{day}T23:59:00Z",
            "duration_minutes": 30,
            "step_minutes": 15,
        },
    )
    # Then only starts inside the hours whose padded time misses the booking's padded time are offered
    assert res.status == 200, res.body
    starts = [s["start"][11:16] for s in res.body["slots"]]
    assert starts == ["09:00", "11:00", "11:15", "11:30"]
    # And availability says why a time is not available
    check = api.get("/availability/check", query={"start": f"{day}T12:00:00Z", "duration_minutes": 30}).body
    assert check["available"] is False
    assert check["rule_violation"]["code"] == "outside_hours"
    assert check["conflicts"] == []
    assert api.get("/availability/check", query={"start": f"{day}T11:00:00Z", "duration_minutes": 30}).body[
        "available"
    ]


def test_an_appointment_across_two_touching_intervals_is_inside_the_hours(
    admin: ApiClient, api: ApiClient
) -> None:
    # Given hours 09:00-12:00 and 12:00-17:00 (Berlin), and 13:00-14:00 on their own
    put_rules(
        admin,
        {
            "time_zone": "Europe/Berlin",
            "weekly_hours": {
                day: [
                    {"start": "09:00", "end": "12:00"},
                    {"start": "12:00", "end": "13:00"},
                    {"start": "13:30", "end": "17:00"},
                ]
                for day in WEEKDAYS
            },
        },
    )
    # Then 11:30-12:30 spans the touching intervals and books; 12:45-13:45 spans the gap and does not
    assert book(api, next_weekday(2, "11:30", "Europe/Berlin"), 60).status == 201
    res = book(api, next_weekday(2, "12:45", "Europe/Berlin"), 60)
    assert res.status == 422 and res.body["error"]["code"] == "outside_hours"
