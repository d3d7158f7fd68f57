"""Races with many real connections at once: the database serializes what could collide
and never rejects a free slot because of lock contention."""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from slotguard.config import DatabaseSettings
from slotguard.db.booking_repository import BookingRepository
from slotguard.db.connection import Database
from slotguard.errors import Busy, SlotConflict
from slotguard.models import Actor, BookRequest
from slotguard.services.booking import BookingService

CONNECTIONS = 50
BASE = datetime(2031, 1, 1, tzinfo=UTC)


class ServicePool:
    """One service (one connection) per worker thread, like one per Lambda container."""

    def __init__(self, url: str, lock_wait_ms: int = 10_000) -> None:
        self._local = threading.local()
        self._url = url
        self._lock_wait_ms = lock_wait_ms
        self._dbs: list[Database] = []
        self._guard = threading.Lock()

    def service(self) -> BookingService:
        if not hasattr(self._local, "svc"):
            db = Database(DatabaseSettings(database_url=self._url))
            with self._guard:
                self._dbs.append(db)
            self._local.svc = BookingService(BookingRepository(db, self._lock_wait_ms))
        svc: BookingService = self._local.svc
        return svc

    def close(self) -> None:
        for db in self._dbs:
            db.close()


def attempt(
    pool: ServicePool, actor: Actor, start: datetime, minutes: int, resource: uuid.UUID | None = None
) -> tuple[str, Any]:
    request = BookRequest(
        contact_id=uuid.uuid4(), scheduled_at=start, duration_minutes=minutes, resource_id=resource
    )
    try:
        return "created", pool.service().book(actor, request).appointment
    except SlotConflict as exc:
        return "conflict", exc.details["conflicts"]
    except Busy as exc:
        return "busy", exc


def run_all(pool: ServicePool, jobs: list[tuple[Any, ...]]) -> list[tuple[str, Any]]:
    # Bounded: a connection that cannot be opened fails the test (it hung, the others waiting)
    barrier = threading.Barrier(CONNECTIONS, timeout=60)

    def warm(_: int) -> BaseException | None:
        try:
            pool.service()._repo._db._connection()  # open all connections before the race
            barrier.wait()
        except threading.BrokenBarrierError as exc:
            return exc
        except BaseException as exc:
            barrier.abort()  # the others stop waiting at once
            return exc
        return None

    with ThreadPoolExecutor(CONNECTIONS) as ex:
        failed = [exc for exc in ex.map(warm, range(CONNECTIONS)) if exc is not None]
        if failed:  # the cause, not a waiter's BrokenBarrierError
            raise next((e for e in failed if not isinstance(e, threading.BrokenBarrierError)), failed[0])
        return list(ex.map(lambda job: attempt(pool, *job), jobs))


def overlapping_pairs(admin_conn: Any, org_id: uuid.UUID) -> int:
    row = admin_conn.execute(
        """SELECT count(*) FROM slotguard.appointments a JOIN slotguard.appointments b
             ON a.org_id = b.org_id AND a.id < b.id
            AND a.resource_id IS NOT DISTINCT FROM b.resource_id
            AND a.status = 'scheduled' AND b.status = 'scheduled'
            AND tstzrange(a.scheduled_at, a.ends_at) && tstzrange(b.scheduled_at, b.ends_at)
          WHERE a.org_id = %s""",
        (org_id,),
    ).fetchone()
    return int(row[0])


@pytest.fixture
def pool(pg: Any) -> Any:
    p = ServicePool(pg.app_url)
    yield p
    p.close()


def actor() -> Actor:
    return Actor(org_id=uuid.uuid4(), subject="user:race")


def test_1000_attempts_at_one_slot_create_exactly_one(pool: ServicePool, admin_conn: Any) -> None:
    # Given 1000 attempts at the same slot over 50 connections at once
    who = actor()
    results = run_all(pool, [(who, BASE, 60)] * 1000)
    # Then exactly one is created and the other 999 are clean conflicts naming it
    outcomes = Counter(kind for kind, _ in results)
    assert outcomes == {"created": 1, "conflict": 999}
    winner = next(value for kind, value in results if kind == "created")
    assert all([c["id"] for c in value] == [str(winner.id)] for kind, value in results if kind == "conflict")
    assert overlapping_pairs(admin_conn, who.org_id) == 0


def test_1000_distinct_slots_on_one_calendar_all_created(pool: ServicePool, admin_conn: Any) -> None:
    # Given 1000 non-overlapping 10-minute slots of one calendar, several per hour bucket
    who = actor()
    jobs = [(who, BASE + timedelta(minutes=10 * i), 10) for i in range(1000)]
    random.Random(7).shuffle(jobs)
    # When they are all booked at once
    results = run_all(pool, jobs)
    # Then every one is created: lock contention never rejects a free slot
    assert Counter(kind for kind, _ in results) == {"created": 1000}
    stored = admin_conn.execute(
        "SELECT count(*) FROM slotguard.appointments WHERE org_id = %s", (who.org_id,)
    ).fetchone()[0]
    assert stored == 1000


def test_500_random_overlapping_attempts_store_no_overlap(pool: ServicePool, admin_conn: Any) -> None:
    # Given 500 random intervals on two calendars of one day, most overlapping others
    who, room = actor(), uuid.uuid4()
    rng = random.Random(42)
    jobs = [
        (
            who,
            BASE + timedelta(minutes=rng.randrange(0, 24 * 60, 5)),
            rng.choice([15, 30, 45, 60, 90, 240]),
            rng.choice([None, room]),
        )
        for _ in range(500)
    ]
    results = run_all(pool, jobs)
    # Then nothing stored overlaps, and there were only creations and conflicts
    kinds = Counter(kind for kind, _ in results)
    assert set(kinds) == {"created", "conflict"}
    assert overlapping_pairs(admin_conn, who.org_id) == 0
    # And every 409 names appointments that really overlap the requested interval
    for (kind, value), (_, start, minutes, resource) in zip(results, jobs, strict=True):
        if kind != "conflict":
            continue
        assert value, "a conflict must name what it conflicts with"
        end = start + timedelta(minutes=minutes)
        for c in value:
            c_start, c_end = datetime.fromisoformat(c["scheduled_at"]), datetime.fromisoformat(c["ends_at"])
            assert c_start < end and start < c_end
            assert c["resource_id"] == (str(resource) if resource else None)


def test_lock_held_past_the_bound_is_busy_not_conflict(pg: Any, admin_conn: Any) -> None:
    # Given another transaction holding the calendar's lock for 10:00-11:00
    who = actor()
    svc = BookingService(BookingRepository(Database(DatabaseSettings(database_url=pg.app_url)), 200))
    holder = psycopg.connect(pg.admin_url)
    try:
        holder.execute(
            "SELECT pg_advisory_xact_lock(k) FROM slotguard.calendar_lock_keys(%s, NULL, %s, %s) k",
            (who.org_id, BASE, BASE + timedelta(hours=1)),
        )
        # When a booking in that hour waits longer than its bound
        request = BookRequest(
            contact_id=uuid.uuid4(), scheduled_at=BASE + timedelta(minutes=15), duration_minutes=15
        )
        with pytest.raises(Busy) as busy:
            svc.book(who, request)
        # Then the answer is busy (503 with Retry-After), and an other hour is not blocked
        assert busy.value.status_code == 503
        assert busy.value.headers()["Retry-After"]
        other_hour = BookRequest(
            contact_id=uuid.uuid4(), scheduled_at=BASE + timedelta(hours=2), duration_minutes=30
        )
        assert svc.book(who, other_hour).appointment.status == "scheduled"
    finally:
        holder.rollback()
        holder.close()
    # And once the lock is free the same booking succeeds
    assert svc.book(who, request).appointment.status == "scheduled"


def test_lock_keys_stripe_by_hour_and_overlaps_share_one(admin_conn: Any) -> None:
    org = uuid.uuid4()

    def keys(start: datetime, minutes: int, resource: uuid.UUID | None = None) -> set[int]:
        rows = admin_conn.execute(
            "SELECT * FROM slotguard.calendar_lock_keys(%s, %s, %s, %s)",
            (org, resource, start, start + timedelta(minutes=minutes)),
        ).fetchall()
        return {r[0] for r in rows}

    ten = BASE + timedelta(hours=10)
    assert len(keys(ten, 60)) == 1
    assert len(keys(ten + timedelta(minutes=30), 60)) == 2
    assert len(keys(ten, 1440)) == 24
    assert keys(ten, 60) & keys(ten + timedelta(minutes=59), 5)  # overlapping intervals share a key
    assert not keys(ten, 60) & keys(ten + timedelta(hours=1), 60)  # touching ones do not need to
    assert not keys(ten, 60) & keys(ten, 60, uuid.uuid4())  # other calendar, other keys


def test_overlapping_insert_that_bypasses_the_function_is_refused(admin_conn: Any) -> None:
    # Given an appointment booked through the function
    org = uuid.uuid4()
    admin_conn.execute(
        "SELECT slotguard.book_appointment_with_lock(%s, 't', %s, NULL, %s, 60)", (org, uuid.uuid4(), BASE)
    )
    # When a writer skips the lock and inserts an overlapping row directly (as the owner)
    with pytest.raises(psycopg.errors.ExclusionViolation):
        admin_conn.execute(
            """INSERT INTO slotguard.appointments
                 (org_id, contact_id, scheduled_at, ends_at, duration_minutes, created_by)
               VALUES (%s, %s, %s, %s, 15, 'rogue')""",
            (org, uuid.uuid4(), BASE + timedelta(minutes=30), BASE + timedelta(minutes=45)),
        )
    # Then the exclusion constraint refuses it; a cancelled row may overlap
    admin_conn.execute(
        """INSERT INTO slotguard.appointments
             (org_id, contact_id, scheduled_at, ends_at, duration_minutes, created_by, status, cancelled_at)
           VALUES (%s, %s, %s, %s, 15, 'rogue', 'cancelled', now())""",
        (org, uuid.uuid4(), BASE + timedelta(minutes=30), BASE + timedelta(minutes=45)),
    )


@pytest.mark.parametrize(
    ("start_minute", "minutes", "held_hour"),
    [(15, 30, 0), (30, 180, 0), (30, 180, 2), (30, 180, 3)],
    ids=["one-hour", "first-of-four", "third-of-four", "last-of-four"],
)
def test_booking_waits_for_each_key_calendar_lock_keys_derives(
    pg: Any, start_minute: int, minutes: int, held_hour: int
) -> None:
    # Given another transaction holding one hour's key, as calendar_lock_keys() derives it, of a
    # calendar with a resource (the key any writer of that hour takes, reschedules included)
    who, room = actor(), uuid.uuid4()
    svc = BookingService(BookingRepository(Database(DatabaseSettings(database_url=pg.app_url)), 200))
    hour = BASE + timedelta(hours=10 + held_hour)
    holder = psycopg.connect(pg.admin_url)
    try:
        holder.execute(
            "SELECT pg_advisory_xact_lock(k) FROM slotguard.calendar_lock_keys(%s, %s, %s, %s) k",
            (who.org_id, room, hour, hour + timedelta(hours=1)),
        )
        # When a booking whose interval touches that hour is attempted
        request = BookRequest(
            contact_id=uuid.uuid4(),
            scheduled_at=BASE + timedelta(hours=10, minutes=start_minute),
            duration_minutes=minutes,
            resource_id=room,
        )
        # Then it waits for that very key and, past its bound, answers busy
        with pytest.raises(Busy):
            svc.book(who, request)
    finally:
        holder.rollback()
        holder.close()
    # And once the key is free it is booked
    assert svc.book(who, request).appointment.status == "scheduled"


def test_a_cancelled_overlap_does_not_refuse_the_slot(pg: Any, admin_conn: Any) -> None:
    # Given an appointment booked and then cancelled
    who = actor()
    svc = BookingService(BookingRepository(Database(DatabaseSettings(database_url=pg.app_url)), 2000))
    first = svc.book(who, BookRequest(contact_id=uuid.uuid4(), scheduled_at=BASE, duration_minutes=60))
    svc.cancel(who, first.appointment.id, "moved")
    # When the same slot is booked again
    again = svc.book(who, BookRequest(contact_id=uuid.uuid4(), scheduled_at=BASE, duration_minutes=60))
    # Then it is created (the exclusion constraint only covers scheduled rows) with its audit row
    assert again.appointment.status == "scheduled"
    audit = admin_conn.execute(
        "SELECT action, changes->>'duration_minutes' FROM slotguard.appointment_audit"
        " WHERE appointment_id = %s",
        (again.appointment.id,),
    ).fetchall()
    assert audit == [("created", "60")]


def test_a_taken_slot_is_a_conflict_even_while_its_hour_is_locked(pg: Any) -> None:
    # Given a booked 10:00-11:00 and another transaction holding that hour's calendar lock
    who = actor()
    svc = BookingService(BookingRepository(Database(DatabaseSettings(database_url=pg.app_url)), 200))
    taken = svc.book(who, BookRequest(contact_id=uuid.uuid4(), scheduled_at=BASE, duration_minutes=60))
    holder = psycopg.connect(pg.admin_url)
    try:
        holder.execute(
            "SELECT pg_advisory_xact_lock(k) FROM slotguard.calendar_lock_keys(%s, NULL, %s, %s) k",
            (who.org_id, BASE, BASE + timedelta(hours=1)),
        )
        # When an overlapping booking arrives while the lock is held past its bound
        request = BookRequest(
            contact_id=uuid.uuid4(), scheduled_at=BASE + timedelta(minutes=30), duration_minutes=15
        )
        with pytest.raises(SlotConflict) as conflict:
            svc.book(who, request)
        # Then it is a 409 naming the booking that holds the slot, not a busy
        assert [c["id"] for c in conflict.value.details["conflicts"]] == [str(taken.appointment.id)]
    finally:
        holder.rollback()
        holder.close()


def test_500_random_attempts_on_a_calendar_with_buffers_store_no_overlapping_buffers(
    pool: ServicePool, admin_conn: Any, pg: Any
) -> None:
    import json

    # Given a calendar whose appointments are padded by 10 minutes before and 15 after
    who = actor()
    with psycopg.connect(pg.app_url, autocommit=True) as conn:
        conn.execute(
            "SELECT slotguard.set_calendar_rules(%s, 'user:rules', NULL, %s)",
            (who.org_id, json.dumps({"buffer_before_minutes": 10, "buffer_after_minutes": 15})),
        )
    rng = random.Random(20)
    jobs = [
        (who, BASE + timedelta(minutes=5 * rng.randrange(0, 288)), rng.choice([15, 30, 45]))
        for _ in range(500)
    ]
    # When 500 random attempts race over 50 connections
    results = run_all(pool, jobs)
    outcomes = Counter(kind for kind, _ in results)
    assert set(outcomes) <= {"created", "conflict"} and outcomes["created"] > 0
    # Then no two stored appointments' padded times overlap, each padded by exactly its buffers
    rows = admin_conn.execute(
        "SELECT scheduled_at, ends_at, blocked_from, blocked_until FROM slotguard.appointments"
        " WHERE org_id = %s AND status = 'scheduled' ORDER BY blocked_from",
        (who.org_id,),
    ).fetchall()
    assert len(rows) == outcomes["created"]
    for start, end, blocked_from, blocked_until in rows:
        assert (start - blocked_from, blocked_until - end) == (timedelta(minutes=10), timedelta(minutes=15))
    for (_, _, _, until), (_, _, next_from, _) in itertools.pairwise(rows):
        assert until <= next_from
    # And every refusal named appointments whose padded time meets the attempt's
    before, after = timedelta(minutes=10), timedelta(minutes=15)
    for (_, start, minutes), (kind, value) in zip(jobs, results, strict=True):
        if kind == "conflict":
            assert value, "a 409 names its conflicts"
            for c in value:
                c_start, c_end = (
                    datetime.fromisoformat(c["scheduled_at"]),
                    datetime.fromisoformat(c["ends_at"]),
                )
                assert c_start - before < start + timedelta(minutes=minutes) + after
                assert start - before < c_end + after
