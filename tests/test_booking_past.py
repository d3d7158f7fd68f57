"""No bookings in the past, for every calendar (issue 20, item 3): starting before now is 422
`in_the_past`, for bookings, reschedules and webhooks; an admin may record a past appointment
with an explicit backfill flag, which the audit trail records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ApiClient, Org


@pytest.fixture
def admin(booking_fn: ModuleType, org: Org) -> ApiClient:
    return ApiClient(booking_fn, org.admin)


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def ago(**delta: float) -> str:
    return iso(datetime.now(UTC) - timedelta(**delta))


def ahead(**delta: float) -> str:
    return iso(datetime.now(UTC) + timedelta(**delta))


def booking(start: str, minutes: int = 30, **extra: Any) -> dict[str, Any]:
    return {"contact_id": str(uuid.uuid4()), "scheduled_at": start, "duration_minutes": minutes, **extra}


def test_a_booking_one_hour_ago_is_422_in_the_past(api: ApiClient) -> None:
    # Given a calendar without any rules
    # When a member books one hour ago (and one that started a minute ago and is still running)
    for start in (ago(hours=1), ago(minutes=1)):
        res = api.post("/appointments", json_body=booking(start, 120))
        # Then it is refused, naming the field
        assert res.status == 422, res.body
        assert res.body["error"]["code"] == "in_the_past"
        assert res.body["error"]["details"]["errors"][0]["loc"] == ["body", "scheduled_at"]
    assert api.get("/appointments").body["items"] == []
    # And a booking in the future is fine
    assert api.post("/appointments", json_body=booking(ahead(minutes=5))).status == 201


def test_a_reschedule_into_the_past_is_422_and_leaves_the_original(api: ApiClient) -> None:
    booked = api.post("/appointments", json_body=booking(ahead(days=1))).body
    res = api.post(f"/appointments/{booked['id']}/reschedule", json_body={"scheduled_at": ago(hours=2)})
    assert res.status == 422, res.body
    assert res.body["error"]["code"] == "in_the_past"
    assert api.get(f"/appointments/{booked['id']}").body["status"] == "scheduled"


def test_an_admin_backfills_a_past_appointment_and_the_audit_trail_says_so(admin: ApiClient) -> None:
    # When an admin records yesterday's appointment with the backfill flag
    res = admin.post("/appointments", json_body=booking(ago(days=1), backfill=True))
    # Then it is booked, and its audit trail records the backfill
    assert res.status == 201, res.body
    history = admin.get(f"/appointments/{res.body['id']}/history").body["entries"]
    assert history[0]["action"] == "created"
    assert history[0]["changes"]["backfill"] == {"from": None, "to": True}
    # And without the flag an admin is refused like anyone
    assert admin.post("/appointments", json_body=booking(ago(days=1))).body["error"]["code"] == "in_the_past"
    # And an admin may move an appointment into the past only with the flag too
    moved = admin.post(
        f"/appointments/{res.body['id']}/reschedule",
        json_body={"scheduled_at": ago(days=2), "backfill": True},
    )
    assert moved.status == 200, moved.body


def test_only_an_admin_may_backfill(api: ApiClient) -> None:
    res = api.post("/appointments", json_body=booking(ago(days=1), backfill=True))
    assert res.status == 403
    assert res.body["error"]["code"] == "forbidden"


def test_the_past_is_neither_offered_nor_available(api: ApiClient) -> None:
    # When a member searches slots from two hours ago to two hours ahead
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    res = api.get(
        "/availability/slots",
        query={
            "from": iso(start - timedelta(hours=2)),
            "to": iso(start + timedelta(hours=2)),
            "duration_minutes": 30,
        },
    )
    # Then no offered slot starts before now
    assert res.status == 200
    assert res.body["slots"]
    now = datetime.now(UTC)
    assert all(
        datetime.fromisoformat(s["start"].replace("Z", "+00:00")) >= now - timedelta(seconds=5)
        for s in res.body["slots"]
    )
    # And the past is not available
    check = api.get("/availability/check", query={"start": ago(hours=1), "duration_minutes": 30}).body
    assert check["available"] is False
    assert check["rule_violation"]["code"] == "in_the_past"


def test_a_webhook_booking_in_the_past_is_rejected_and_cannot_backfill(pipeline: Any) -> None:
    org_id, secret = pipeline.new_org()
    past = pipeline.send(org_id, secret, "appointment.book", booking(ago(hours=3)))
    backfill = pipeline.send(org_id, secret, "appointment.book", booking(ago(hours=3), backfill=True))
    pipeline.drain(
        pipeline.event_source(),
        lambda: sum(r["status"] in ("completed", "dead_letter") for r in pipeline.rows(org_id)) >= 2,
    )
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert (rows[past]["status"], rows[past]["outcome"]) == ("completed", "rejected")
    assert rows[past]["outcome_detail"]["code"] == "in_the_past"
    assert (rows[backfill]["status"], rows[backfill]["outcome"]) == ("completed", "rejected")
    assert rows[backfill]["outcome_detail"]["status"] == "backfill_not_allowed"
    assert pipeline.appointments(org_id) == []
