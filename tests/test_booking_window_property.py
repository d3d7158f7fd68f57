"""Property: a booking inside the booking window is booked, one outside it is refused naming
the window, and whatever a write path accepts, every read path can return. Times are drawn
from the whole range a client can send (years 1..9999, offsets -12:00..+14:00), heavily
around the edges of the booking window; explicit edges beside them (README, "The booking
window": a year of 1970..2199 as written, in its own offset)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slotguard.models import BOOKING_WINDOW_END, BOOKING_WINDOW_MESSAGE, BOOKING_WINDOW_START
from tests.conftest import ApiClient, new_org

# The refusal of a time outside the window: a field error on scheduled_at naming the window
WINDOW_REFUSAL = {
    "code": "validation_error",
    "message": "the request is not valid",
    "details": {
        "errors": [
            {
                "loc": ["body", "scheduled_at"],
                "msg": f"Value error, {BOOKING_WINDOW_MESSAGE}",
                "type": "value_error",
            }
        ],
        "error_count": 1,
        "truncated": False,
    },
}

OFFSETS = st.integers(min_value=-12 * 4, max_value=14 * 4).map(lambda q: timezone(timedelta(minutes=15 * q)))
NAIVE_EDGES = [
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59),
    BOOKING_WINDOW_START.replace(tzinfo=None),
    BOOKING_WINDOW_END.replace(tzinfo=None),
    # the window's edges as written in any offset: its first and last minute, and a century
    datetime(1970, 1, 1),
    datetime(2199, 12, 31, 23, 59),
    datetime(2100, 1, 1),
]


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """An aware datetime: anywhere, anywhere inside the window's years, or within a day of an
    edge of the window or of the calendar."""
    tz = draw(OFFSETS)
    where = draw(st.sampled_from(["anywhere", "inside", "edge"]))
    if where == "anywhere":
        naive = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)))
    elif where == "inside":
        naive = draw(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2199, 12, 31, 23, 59)))
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


def inside_the_window(start: datetime) -> bool:
    """The contract's rule: the year as written (in the time's own offset) is 1970..2199; every
    offset drawn here is inside -12:00..+14:00, and any duration of 1..1440 minutes then ends
    inside [BOOKING_WINDOW_START, BOOKING_WINDOW_END]."""
    return 1970 <= start.year <= 2199


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=instants(), minutes=st.integers(min_value=1, max_value=1440))
def test_whatever_is_booked_can_be_read_back_everywhere(
    booking_fn: Any, start: datetime, minutes: int
) -> None:
    # Given a fresh org (each example its own calendar)
    api = ApiClient(booking_fn, new_org().admin)
    # When a booking is attempted at any instant, in any offset (as an admin's backfill, so
    # the past is allowed: only the window decides)
    res = book(api, start, minutes)
    # Then outside the window it is refused naming the window, and inside it is booked (a fresh
    # calendar has nothing to overlap, so never a 409, and never any other 422)
    if not inside_the_window(start):
        assert (res.status, res.body) == (422, {"error": WINDOW_REFUSAL}), (start.isoformat(), res.body)
        return
    assert res.status == 201, (start.isoformat(), res.body)
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


@pytest.mark.parametrize(
    "scheduled_at",
    [
        "2199-12-31T23:59:00+14:00",  # the window's last minute as written, in the earliest offset
        "2199-12-31T23:59:00-12:00",  # the same wall time in the latest offset: ends 2200-01-02 11:59Z
        "2100-01-01T00:00:00+14:00",  # the first minute of the 2100s
        "2100-02-28T12:00:00-05:00",  # 2100 is no leap year
        "2150-06-15T10:00:00+05:45",
        "2196-02-29T10:00:00Z",  # the last leap day in the window
    ],
)
def test_a_future_booking_in_the_years_2100_to_2199_is_booked(booking_fn: Any, scheduled_at: str) -> None:
    # Given a member of a fresh org (no rules, no backfill flag: the plain path)
    api = ApiClient(booking_fn, new_org().member)
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": scheduled_at, "duration_minutes": 1440}
    # When they book a day at an edge of the window's far end
    res = api.post("/appointments", json_body=body)
    # Then it is booked at that instant, ending inside the window, and reads back
    assert res.status == 201, res.body
    start = datetime.fromisoformat(scheduled_at)
    assert datetime.fromisoformat(res.body["scheduled_at"]) == start
    assert datetime.fromisoformat(res.body["ends_at"]) == start + timedelta(days=1)
    assert datetime.fromisoformat(res.body["ends_at"]) <= BOOKING_WINDOW_END
    assert api.get(f"/appointments/{res.body['id']}").body == res.body


def test_a_booking_at_the_windows_first_day_is_in_the_past_unless_an_admin_backfills_it(
    booking_fn: Any,
) -> None:
    org = new_org()
    member, admin = ApiClient(booking_fn, org.member), ApiClient(booking_fn, org.admin)
    body = {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": "1970-01-01T00:00:00-12:00",
        "duration_minutes": 60,
    }
    # When a member books the window's first day (1970-01-01 in the latest offset), long past
    res = member.post("/appointments", json_body=body)
    # Then it is refused as in the past (inside the window, so not a window refusal)
    assert res.status == 422, res.body
    assert res.body["error"]["code"] == "in_the_past"
    assert res.body["error"]["details"]["errors"] == [
        {"loc": ["body", "scheduled_at"], "msg": "the appointment starts in the past", "type": "in_the_past"}
    ]
    # When an admin records it with the backfill flag, and the window's very first instant too
    # (1970-01-01T00:00+14:00 = BOOKING_WINDOW_START)
    backfilled = admin.post("/appointments", json_body={**body, "backfill": True})
    first = admin.post(
        "/appointments",
        json_body={
            **body,
            "scheduled_at": "1970-01-01T00:00:00+14:00",
            "duration_minutes": 1,
            "backfill": True,
        },
    )
    # Then both are booked at those instants
    assert backfilled.status == 201, backfilled.body
    assert backfilled.body["scheduled_at"] == "1970-01-01T12:00:00Z"
    assert first.status == 201, first.body
    assert datetime.fromisoformat(first.body["scheduled_at"]) == BOOKING_WINDOW_START
    # And one minute earlier, written in 1969, is outside the window even for a backfill
    before = admin.post(
        "/appointments",
        json_body={
            **body,
            "scheduled_at": "1969-12-31T23:59:00+14:00",
            "duration_minutes": 1,
            "backfill": True,
        },
    )
    assert (before.status, before.body) == (422, {"error": WINDOW_REFUSAL})
