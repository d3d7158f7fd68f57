"""A booking that waits too long for any lock answers `busy` on a healthy connection (issue 19
item 4), and the all-zero resource id is the default calendar for the locks as it is for the
exclusion constraint."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import psycopg
import pytest

from slotguard_local.functions import load_function
from tests.conftest import ApiClient, Org

ZERO = "00000000-0000-0000-0000-000000000000"
LOCK_WAIT_MS = 300


@pytest.fixture
def booking_fast(pg: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A booking container whose lock wait is short, so a wait past it is quick to provoke."""
    monkeypatch.setenv("BOOKING_LOCK_WAIT_MS", str(LOCK_WAIT_MS))
    module = load_function("booking")
    yield module
    module.service._repo._db.close()


def booking(at: str, minutes: int, resource_id: str | None) -> dict[str, Any]:
    return {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": at,
        "duration_minutes": minutes,
        "resource_id": resource_id,
    }


def connection_of(fn: ModuleType) -> Any:
    return fn.service._repo._db._conn


@pytest.mark.parametrize("minutes", [15, 120], ids=["one-hour-bucket", "several-buckets"])
@pytest.mark.parametrize(
    ("in_flight", "then"), [(None, ZERO), (ZERO, None)], ids=["none-then-zero", "zero-then-none"]
)
def test_the_all_zero_resource_queues_on_the_default_calendars_lock(
    pg: Any, booking_fast: ModuleType, org: Org, minutes: int, in_flight: str | None, then: str | None
) -> None:
    api = ApiClient(booking_fast, org.member)
    assert api.get("/appointments").status == 200  # the container's connection, opened
    before = connection_of(booking_fast)
    # Given a booking of the default calendar, 10:00-11:00, in flight (not committed yet), one
    # spelling of it (no resource, or the all-zero id the constraint treats as the same calendar)
    holder = psycopg.connect(pg.app_url)
    try:
        held = holder.execute(
            "SELECT slotguard.book_appointment_with_lock(%s, 'test', %s, %s, '2030-05-06T10:00:00Z', 60)",
            (org.org_id, uuid.uuid4(), in_flight),
        ).fetchone()
        assert held is not None and held[0]["status"] == "created"
        # When a member books an overlapping slot with the other spelling, while it is in flight
        res = api.post("/appointments", json_body=booking("2030-05-06T10:30:00Z", minutes, then))
        # Then it waited on the same calendar lock, and past its bound it is busy, with
        # Retry-After, on the same, healthy connection
        assert res.status == 503, res.body
        assert res.body["error"]["code"] == "busy"
        assert int(res.headers["Retry-After"]) >= 1
        assert connection_of(booking_fast) is before and not before.closed
        holder.commit()
    finally:
        holder.close()
    # And once the first booking is committed, the same request is a 409 naming it
    res = api.post("/appointments", json_body=booking("2030-05-06T10:30:00Z", minutes, then))
    assert res.status == 409, res.body
    assert [c["id"] for c in res.body["error"]["details"]["conflicts"]] == [held[0]["appointment"]["id"]]


def test_the_all_zero_resource_has_the_default_calendars_lock_keys(admin_conn: Any) -> None:
    # Given an interval of one org
    org = uuid.uuid4()
    keys = (
        "SELECT array_agg(k)"
        " FROM slotguard.calendar_lock_keys(%s, %s, '2030-05-06T10:00Z', '2030-05-06T13:00Z') k"
    )
    # When its keys are derived for no resource and for the all-zero id
    none = admin_conn.execute(keys, (org, None)).fetchone()[0]
    zero = admin_conn.execute(keys, (org, ZERO)).fetchone()[0]
    other = admin_conn.execute(keys, (org, uuid.uuid4())).fetchone()[0]
    # Then they are the same keys, as the exclusion constraint's coalesce makes them one calendar
    assert none == zero and len(none) == 3
    assert set(other).isdisjoint(none)


def test_a_lock_wait_past_the_bound_inside_the_insert_is_busy_on_a_healthy_connection(
    pg: Any, booking_fast: ModuleType, org: Org
) -> None:
    api = ApiClient(booking_fast, org.member)
    assert api.get("/appointments").status == 200
    before = connection_of(booking_fast)
    # Given a writer that skips the calendar lock, with an overlapping row not yet committed
    # (the exclusion constraint makes an overlapping INSERT wait for its transaction)
    holder = psycopg.connect(pg.admin_url)
    try:
        holder.execute(
            "INSERT INTO slotguard.appointments (org_id, contact_id, scheduled_at, ends_at, duration_minutes,"
            " created_by) VALUES (%s, %s, '2030-05-07T10:00:00Z', '2030-05-07T11:00:00Z', 60, 'bypass')",
            (org.org_id, uuid.uuid4()),
        )
        # When a member books an overlapping slot
        res = api.post("/appointments", json_body=booking("2030-05-07T10:30:00Z", 15, None))
        # Then the lock timeout inside the INSERT is busy (503, Retry-After), not an outage, and
        # the container keeps its connection
        assert res.status == 503, res.body
        assert res.body["error"]["code"] == "busy"
        assert int(res.headers["Retry-After"]) >= 1
        assert connection_of(booking_fast) is before and not before.closed
    finally:
        holder.rollback()
        holder.close()
    # And the connection serves the next request: the slot is free again
    res = api.post("/appointments", json_body=booking("2030-05-07T10:30:00Z", 15, None))
    assert res.status == 201, res.body
    assert connection_of(booking_fast) is before
