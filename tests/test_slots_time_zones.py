"""Slot search and availability in the calendar's time zone (issue 20, item 4): local opening
hours stay local across DST transitions, odd offsets and skipped days; answers are UTC with `Z`,
with the calendar's zone and, on request, another zone's wall times."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.conftest import ApiClient, Org, PgInstance

EVERY_DAY = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@pytest.fixture
def admin(booking_fn: ModuleType, org: Org) -> ApiClient:
    return ApiClient(booking_fn, org.admin)


def open_daily(zone: str, start: str = "09:00", end: str = "17:00") -> dict[str, Any]:
    return {"time_zone": zone, "weekly_hours": {day: [{"start": start, "end": end}] for day in EVERY_DAY}}


def slots_of_local_day(api: ApiClient, zone: str, day: date, minutes: int, **extra: Any) -> Any:
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    res = api.get(
        "/availability/slots",
        query={
            "from": start.isoformat().replace("+00:00", "Z"),
            "to": end.isoformat().replace("+00:00", "Z"),
            "duration_minutes": minutes,
            **extra,
        },
    )
    assert res.status == 200, res.body
    return res.body


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Berlin", date(2030, 3, 31)),  # spring forward, 02:00 -> 03:00
        ("Europe/Berlin", date(2030, 10, 27)),  # fall back, 03:00 -> 02:00
        ("America/New_York", date(2030, 3, 10)),
        ("America/New_York", date(2030, 11, 3)),
        ("Australia/Lord_Howe", date(2030, 4, 7)),  # a 30-minute shift, 02:00 -> 01:30
        ("Australia/Lord_Howe", date(2030, 10, 6)),  # 02:00 -> 02:30
        ("Asia/Kathmandu", date(2030, 6, 3)),  # +05:45
    ],
)
def test_local_nine_to_five_stays_nine_to_five_across_transitions(
    admin: ApiClient, api: ApiClient, zone: str, day: date
) -> None:
    # Given a calendar open 09:00-17:00 every day in its zone
    admin.request("PUT", "/calendars/default/rules", json_body=open_daily(zone))
    # When a member asks for the hour-long slots of the transition's local day
    body = slots_of_local_day(api, zone, day, 60)
    # Then they are 09:00 .. 16:00 local, answered in UTC with Z, with the calendar's zone
    tz = ZoneInfo(zone)
    expected = [datetime.combine(day, time(h), tz).astimezone(UTC) for h in range(9, 17)]
    assert [s["start"] for s in body["slots"]] == [e.isoformat().replace("+00:00", "Z") for e in expected]
    assert [s["local_start"][11:16] for s in body["slots"]] == [f"{h:02d}:00" for h in range(9, 17)]
    assert body["time_zone"] == zone and body["display_time_zone"] == zone


def test_another_zones_wall_times_on_request(admin: ApiClient, api: ApiClient) -> None:
    admin.request("PUT", "/calendars/default/rules", json_body=open_daily("Asia/Kathmandu"))
    body = slots_of_local_day(api, "Asia/Kathmandu", date(2030, 6, 3), 60, time_zone="America/New_York")
    assert body["time_zone"] == "Asia/Kathmandu"
    assert body["display_time_zone"] == "America/New_York"
    # 09:00 in Kathmandu (+05:45) is 23:15 the day before in New York (-04:00)
    assert body["slots"][0]["start"] == "2030-06-03T03:15:00Z"
    assert body["slots"][0]["local_start"] == "2030-06-02T23:15:00"
    bad = api.get(
        "/availability/slots",
        query={
            "from": "2030-06-03T00:00:00Z",
            "to": "2030-06-04T00:00:00Z",
            "duration_minutes": 60,
            "time_zone": "Mars/Olympus",
        },
    )
    assert bad.status == 422


def test_a_local_time_that_never_occurs_opens_when_the_clock_jumps_past_it(
    admin: ApiClient, api: ApiClient
) -> None:
    # Given Berlin hours from 02:30 on the day the clocks jump from 02:00 to 03:00
    admin.request("PUT", "/calendars/default/rules", json_body=open_daily("Europe/Berlin", "02:30", "05:00"))
    body = slots_of_local_day(api, "Europe/Berlin", date(2030, 3, 31), 30, step_minutes=30)
    # Then the first slot is 03:30 local (02:30 moved forward by the gap), 01:30Z
    assert body["slots"][0]["start"] == "2030-03-31T01:30:00Z"
    assert body["slots"][0]["local_start"] == "2030-03-31T03:30:00"
    assert body["slots"][-1]["local_end"] == "2030-03-31T05:00:00"


def test_a_local_time_that_occurs_twice_opens_at_its_second_occurrence(
    admin: ApiClient, api: ApiClient
) -> None:
    # Given Berlin hours from 02:30 on the day 02:00-03:00 happens twice
    admin.request("PUT", "/calendars/default/rules", json_body=open_daily("Europe/Berlin", "02:30", "04:00"))
    body = slots_of_local_day(api, "Europe/Berlin", date(2030, 10, 27), 30, step_minutes=30)
    # Then it opens at the second 02:30 (standard time, +01:00), 01:30Z
    assert body["slots"][0]["start"] == "2030-10-27T01:30:00Z"
    assert body["slots"][0]["local_start"] == "2030-10-27T02:30:00"
    assert len(body["slots"]) == 3  # 02:30, 03:00, 03:30 (+01:00)


def test_a_skipped_day_is_never_open(pg: PgInstance) -> None:
    # Given Samoa's calendar open 09:00-17:00 every day: Apia skipped 30 December 2011 entirely
    rules = json.dumps(open_daily("Pacific/Apia"))
    with psycopg.connect(pg.admin_url) as conn:
        ranges = conn.execute(
            "SELECT lower(r), upper(r) FROM unnest(slotguard._open_hours(%s::jsonb,"
            " '2011-12-29 12:00+00', '2011-12-31 12:00+00')) AS r ORDER BY 1",
            (rules,),
        ).fetchall()
    tz = ZoneInfo("Pacific/Apia")
    local_days = {lower.astimezone(tz).date() for lower, _ in ranges}
    # Then the 29th and the 31st are open 09:00-17:00 local, the 30th never
    assert date(2011, 12, 30) not in local_days
    assert {date(2011, 12, 29), date(2011, 12, 31)} <= local_days
    for lower, upper in ranges:
        assert (lower.astimezone(tz).time(), upper.astimezone(tz).time()) == (time(9), time(17))


def test_a_resource_calendars_own_rules_shape_its_search_even_when_the_window_is_too_short(
    admin: ApiClient, api: ApiClient
) -> None:
    # Given a resource's calendar in Kathmandu with a 45-minute slot step, and a default calendar in UTC
    calendar = str(__import__("uuid").uuid4())
    rules = {**open_daily("Asia/Kathmandu", "00:00", "23:45"), "slot_step_minutes": 45}
    assert admin.request("PUT", f"/calendars/{calendar}/rules", json_body=rules).status == 200
    query = {"from": "2030-06-03T00:00:00Z", "to": "2030-06-03T12:00:00Z", "duration_minutes": 30}
    # When that calendar's slots are searched
    body = api.get("/availability/slots", query={**query, "resource_id": calendar}).body
    # Then its zone and its step shape the answer
    assert (body["time_zone"], body["display_time_zone"], body["step_minutes"]) == ("Asia/Kathmandu",) * 2 + (
        45,
    )
    first, second = (datetime.fromisoformat(s["start"]) for s in body["slots"][:2])
    assert second - first == timedelta(minutes=45)
    # And a window shorter than the duration answers no slot, still in the calendar's zone
    short = api.get(
        "/availability/slots",
        query={**query, "to": "2030-06-03T00:20:00Z", "resource_id": calendar},
    ).body
    assert (short["slots"], short["time_zone"], short["display_time_zone"]) == (
        [],
        "Asia/Kathmandu",
        "Asia/Kathmandu",
    )
    # And the default calendar has none of it
    default = api.get("/availability/slots", query=query).body
    assert (default["time_zone"], default["step_minutes"]) == ("UTC", 30)


def test_search_bounds_are_answered_in_utc_whatever_the_machines_zone(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a machine whose local zone is Tokyo (a container's TZ), and a search given in +02:00
    import time as clock

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    clock.tzset()
    try:
        body = api.get(
            "/availability/slots",
            query={
                "from": "2030-06-03T02:00:00+02:00",
                "to": "2030-07-20T00:00:00+02:00",
                "duration_minutes": 60,
            },
        ).body
        short = api.get(
            "/availability/slots",
            query={
                "from": "2030-06-03T02:00:00+02:00",
                "to": "2030-06-03T06:00:00+02:00",
                "duration_minutes": 60,
            },
        ).body
    finally:
        monkeypatch.undo()  # TZ as it was (or unset), then the process's zone read again
        clock.tzset()
    # Then where the search stopped and where to go on are UTC instants, written with Z, also when
    # the search stops at its own end
    assert body["searched_to"].endswith("Z") and body["next_from"].endswith("Z"), body
    assert body["slots"][0]["start"] == "2030-06-03T00:00:00Z"
    assert short["searched_to"] == "2030-06-03T04:00:00Z", short


def test_a_search_cut_at_31_days_goes_on_from_the_next_start_on_its_step(api: ApiClient) -> None:
    # Given a 45-minute search on a 60-minute step over 40 days (cut at 31 days, 744 hours: the
    # last start that fits is the 743rd step; 743 steps and a quarter fit)
    body = api.get(
        "/availability/slots",
        query={
            "from": "2030-08-01T00:00:00Z",
            "to": "2030-09-10T00:00:00Z",
            "duration_minutes": 45,
            "step_minutes": 60,
        },
    ).body
    # Then the search stopped at 31 days and goes on from the next start on the step's grid
    assert body["searched_to"] == "2030-09-01T00:00:00Z"
    start = datetime(2030, 8, 1, tzinfo=UTC)
    assert body["next_from"] == (start + timedelta(hours=744)).isoformat().replace("+00:00", "Z")
