"""Property: whatever a write path accepts, every read path can return. Times are drawn from
the whole range a client can send (years 1..9999, offsets -12:00..+14:00), heavily around
the edges of the booking window."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slotguard.models import BOOKING_WINDOW_END, BOOKING_WINDOW_START
from tests.conftest import ApiClient, new_org

OFFSETS = st.integers(min_value=-12 * 4, max_value=14 * 4).map(lambda q: timezone(timedelta(minutes=15 * q)))
NAIVE_EDGES = [
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59),
    BOOKING_WINDOW_START.replace(tzinfo=None),
    BOOKING_WINDOW_END.replace(tzinfo=None),
]


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """An aware datetime: anywhere, or within a day of an edge of the window or of the calendar."""
    tz = draw(OFFSETS)
    if draw(st.booleans()):
        naive = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)))
    else:
        edge = draw(st.sampled_from(NAIVE_EDGES))
        minutes = draw(st.integers(min_value=-1500, max_value=1500))
        try:
            naive = edge + timedelta(minutes=minutes)
        except OverflowError:
            naive = edge
    return naive.replace(second=0, microsecond=0, tzinfo=tz)


def book(api: ApiClient, start: datetime, minutes: int) -> Any:
    # (an admin's backfill: the window's early edge is in the past, which only a backfill may book)
    body = {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": start.isoformat(),
        "duration_minutes": minutes,
        "backfill": True,
    }
    return api.post("/appointments", json_body=body)


def ok_or_4xx(status: int, body: Any) -> None:
    assert status < 500, body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=instants(), minutes=st.integers(min_value=1, max_value=1440))
def test_whatever_is_booked_can_be_read_back_everywhere(
    booking_fn: Any, start: datetime, minutes: int
) -> None:
    # Given a fresh org (each example its own calendar)
    api = ApiClient(booking_fn, new_org().admin)
    # When a booking is attempted at any instant, in any offset
    res = book(api, start, minutes)
    ok_or_4xx(res.status, res.body)
    if res.status != 201:
        assert res.status == 422, res.body
        return
    appt = res.body
    stored_start = datetime.fromisoformat(appt["scheduled_at"])
    assert stored_start >= BOOKING_WINDOW_START
    assert datetime.fromisoformat(appt["ends_at"]) <= BOOKING_WINDOW_END
    # Then every read path returns it
    got = api.get(f"/appointments/{appt['id']}")
    assert (got.status, got.body) == (200, appt)
    history = api.get(f"/appointments/{appt['id']}/history")
    assert history.status == 200 and history.body["entries"][0]["action"] == "created"
    listed = api.get("/appointments", query={"limit": 1})
    assert listed.status == 200 and [a["id"] for a in listed.body["items"]] == [appt["id"]]
    window = api.get("/appointments", query={"from": appt["scheduled_at"], "to": appt["ends_at"], "limit": 1})
    assert window.status == 200 and [a["id"] for a in window.body["items"]] == [appt["id"]]
    check = api.get("/availability/check", query={"start": appt["scheduled_at"], "duration_minutes": minutes})
    assert check.status == 200 and [c["id"] for c in check.body["conflicts"]] == [appt["id"]]
    # And a second booking of the slot is a 409 whose details name it
    again = book(api, start, minutes)
    assert again.status == 409, again.body
    assert [c["id"] for c in again.body["error"]["details"]["conflicts"]] == [appt["id"]]
    # And the slots around it are searchable
    day = stored_start.astimezone(UTC).replace(hour=0, minute=0)
    slots = api.get(
        "/availability/slots",
        query={"from": day.isoformat(), "to": (day + timedelta(hours=6)).isoformat(), "duration_minutes": 60},
    )
    ok_or_4xx(slots.status, slots.body)
    # And a reschedule anywhere is an answer, never a 500; its result reads back too
    moved = api.post(
        f"/appointments/{appt['id']}/reschedule",
        json_body={"scheduled_at": (start + timedelta(minutes=minutes)).isoformat()},
    )
    ok_or_4xx(moved.status, moved.body)
    if moved.status == 200:
        new_id = moved.body["appointment"]["id"]
        assert api.get(f"/appointments/{new_id}").status == 200
        assert api.get(f"/appointments/{appt['id']}/history").status == 200
        assert api.get("/appointments", query={"limit": 1}).status == 200
