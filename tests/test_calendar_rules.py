"""Calendars with rules, as data (issue 20, item 1): admins write rules, members read them, every
change is a new version in an audit trail, and invalid rules are 422s naming the field."""

from __future__ import annotations

import uuid
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ApiClient, Org

BERLIN_WEEKDAYS = {
    "time_zone": "Europe/Berlin",
    "weekly_hours": {
        day: [{"start": "09:00", "end": "12:00"}, {"start": "13:00", "end": "17:00"}]
        for day in ("monday", "tuesday", "wednesday", "thursday", "friday")
    },
    "date_overrides": {"2030-12-24": [{"start": "09:00", "end": "12:00"}], "2030-12-25": []},
    "buffer_before_minutes": 10,
    "buffer_after_minutes": 5,
    "min_notice_minutes": 60,
    "max_horizon_days": 3650,
    "min_duration_minutes": 15,
    "max_duration_minutes": 120,
    "duration_multiple_minutes": 15,
    "slot_step_minutes": 15,
}


@pytest.fixture
def admin(booking_fn: ModuleType, org: Org) -> ApiClient:
    return ApiClient(booking_fn, org.admin)


def put_rules(client: ApiClient, calendar: str, rules: dict[str, Any]) -> Any:
    return client.request("PUT", f"/calendars/{calendar}/rules", json_body=rules)


def test_a_calendar_without_rules_reads_as_version_0(api: ApiClient) -> None:
    # Given an org that never set rules, when a member reads its default calendar's rules
    res = api.get("/calendars/default/rules")
    # Then there are none: version 0, rules null
    assert res.status == 200, res.body
    assert res.body == {
        "resource_id": None,
        "version": 0,
        "rules": None,
        "updated_at": None,
        "updated_by": None,
    }


def test_an_admin_sets_rules_and_a_member_reads_them(admin: ApiClient, api: ApiClient, org: Org) -> None:
    resource = str(uuid.uuid4())
    # When an admin sets a resource calendar's rules
    saved = put_rules(admin, resource, BERLIN_WEEKDAYS)
    # Then they are version 1, stored as sent (defaults filled in), by that admin
    assert saved.status == 200, saved.body
    calendar = saved.body["calendar"]
    assert calendar["version"] == 1
    assert calendar["resource_id"] == resource
    assert calendar["updated_by"] == f"user:{org.admin['sub']}"
    assert calendar["rules"]["weekly_hours"]["monday"] == BERLIN_WEEKDAYS["weekly_hours"]["monday"]
    assert saved.body["violations"] == {"count": 0, "items": []}
    # And a member reads the same; the org's default calendar still has none
    read = api.get(f"/calendars/{resource}/rules")
    assert read.status == 200
    assert read.body == calendar
    assert api.get("/calendars/default/rules").body["version"] == 0


def test_a_member_may_not_write_rules(api: ApiClient) -> None:
    # When a member (no admin role) sets rules
    res = put_rules(api, "default", {"time_zone": "UTC"})
    # Then it is forbidden and nothing is stored
    assert res.status == 403
    assert res.body["error"]["code"] == "forbidden"
    assert api.get("/calendars/default/rules").body["version"] == 0


def test_every_change_is_a_new_version_in_the_audit_trail(admin: ApiClient, api: ApiClient, org: Org) -> None:
    # Given rules set three times
    for notice in (0, 30, 60):
        assert put_rules(admin, "default", {"min_notice_minutes": notice}).status == 200
    # When a member reads the history
    history = api.get("/calendars/default/rules/history")
    # Then each version is there, oldest first, with who set it and what it was
    assert history.status == 200
    entries = history.body["entries"]
    assert [e["version"] for e in entries] == [1, 2, 3]
    assert [e["rules"]["min_notice_minutes"] for e in entries] == [0, 30, 60]
    assert {e["actor"] for e in entries} == {f"user:{org.admin['sub']}"}
    assert api.get("/calendars/default/rules").body["version"] == 3


def test_another_orgs_rules_are_invisible(booking_fn: ModuleType, admin: ApiClient) -> None:
    from tests.conftest import new_org

    put_rules(admin, "default", {"min_notice_minutes": 30})
    stranger = ApiClient(booking_fn, new_org().member)
    assert stranger.get("/calendars/default/rules").body["version"] == 0
    assert stranger.get("/calendars/default/rules/history").body["entries"] == []


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone"),
        (
            {
                "weekly_hours": {
                    "monday": [{"start": "09:00", "end": "12:00"}, {"start": "11:30", "end": "13:00"}]
                }
            },
            "weekly_hours",
        ),
        ({"weekly_hours": {"monday": [{"start": "12:00", "end": "09:00"}]}}, "weekly_hours"),
        ({"weekly_hours": {"monday": [{"start": "9:00", "end": "17:00"}]}}, "weekly_hours"),
        ({"weekly_hours": {"funday": []}}, "weekly_hours"),
        ({"date_overrides": {"2030-02-30": []}}, "date_overrides"),
        (
            {
                "date_overrides": {
                    "2030-12-24": [{"start": "10:00", "end": "11:00"}, {"start": "10:30", "end": "12:00"}]
                }
            },
            "date_overrides",
        ),
        ({"buffer_before_minutes": -5}, "buffer_before_minutes"),
        ({"buffer_after_minutes": 1441}, "buffer_after_minutes"),
        ({"min_notice_minutes": -1}, "min_notice_minutes"),
        ({"max_horizon_days": 0}, "max_horizon_days"),
        ({"min_duration_minutes": 0}, "min_duration_minutes"),
        ({"slot_step_minutes": 1}, "slot_step_minutes"),
        ({"buffer_before_minutes": "10"}, "buffer_before_minutes"),
        ({"opening_hours": {}}, "opening_hours"),
    ],
)
def test_invalid_rules_are_422_naming_the_field(admin: ApiClient, rules: dict[str, Any], field: str) -> None:
    # When an admin sends invalid rules
    res = put_rules(admin, "default", rules)
    # Then it is a 422 whose errors name the field, and nothing is stored
    assert res.status == 422, res.body
    assert res.body["error"]["code"] == "validation_error"
    assert any(field in map(str, e["loc"]) for e in res.body["error"]["details"]["errors"]), res.body
    assert admin.get("/calendars/default/rules").body["version"] == 0


def test_min_duration_above_max_is_422(admin: ApiClient) -> None:
    res = put_rules(admin, "default", {"min_duration_minutes": 60, "max_duration_minutes": 30})
    assert res.status == 422
    assert "min_duration_minutes" in res.body["error"]["details"]["errors"][0]["msg"]


def test_a_calendar_id_is_default_or_a_uuid(api: ApiClient) -> None:
    res = api.get("/calendars/not-a-calendar/rules")
    assert res.status == 422


def test_a_long_history_lists_the_newest_versions_within_its_budget_with_the_count(admin: ApiClient) -> None:
    from datetime import date, timedelta

    from slotguard.models import MAX_DATE_OVERRIDES, MAX_RULES_HISTORY_BYTES

    # Given rules as large as the API takes (400 dated overrides of 24 intervals), set 9 times
    day = [{"start": f"{h:02d}:00", "end": f"{h:02d}:30"} for h in range(24)]
    overrides = {str(date(2031, 1, 1) + timedelta(days=n)): day for n in range(MAX_DATE_OVERRIDES)}
    for notice in range(9):
        saved = put_rules(admin, "default", {"date_overrides": overrides, "min_notice_minutes": notice})
        assert saved.status == 200, saved.body
    # When the history is read
    history = admin.get("/calendars/default/rules/history")
    # Then it lists the newest versions whose rules fit the budget, oldest of those first, and says
    # how many there are and that some are left out
    assert history.status == 200
    body = history.body
    versions = [e["version"] for e in body["entries"]]
    assert versions == list(range(10 - len(versions), 10)), versions
    assert 1 <= len(versions) < 9
    assert (body["entry_count"], body["truncated"]) == (9, True)
    import json

    assert sum(len(json.dumps(e["rules"])) for e in body["entries"][1:]) <= MAX_RULES_HISTORY_BYTES
