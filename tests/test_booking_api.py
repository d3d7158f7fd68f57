"""Booking through the handler: real HTTP API events, real Postgres as the app role."""

from __future__ import annotations

import json
import re
import uuid
from types import ModuleType
from typing import Any

import pytest

from slotguard_local.events import LambdaContext, http_api_event
from tests.conftest import ApiClient, Org, new_org


def slot(start: str, minutes: int = 60, **extra: Any) -> dict[str, Any]:
    return {"contact_id": str(uuid.uuid4()), "scheduled_at": start, "duration_minutes": minutes, **extra}


def test_book_returns_201_with_the_appointment(api: ApiClient, org: Org) -> None:
    # Given a free calendar
    # When a member books 10:00-11:00
    res = api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z", 60, notes="first visit"))
    # Then it is created with the org from the token, its end and status
    assert res.status == 201, res.body
    appt = res.body
    assert appt["org_id"] == org.org_id
    assert appt["ends_at"].startswith("2030-01-07T11:00:00")
    assert appt["status"] == "scheduled"
    assert appt["notes"] == "first visit"
    assert res.headers["Location"] == f"/appointments/{appt['id']}"
    # And it can be read back
    got = api.get(f"/appointments/{appt['id']}")
    assert got.status == 200
    assert got.body == appt


def test_org_in_body_is_refused_not_trusted(api: ApiClient) -> None:
    # Given a body that tries to choose its org
    res = api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z", org_id=str(uuid.uuid4())))
    # Then it is an unknown field (422), nothing booked
    assert res.status == 422
    assert res.body["error"]["code"] == "validation_error"


def test_identical_slot_conflicts_with_409_naming_the_conflict(api: ApiClient) -> None:
    first = api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z")).body
    res = api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z"))
    assert res.status == 409
    assert res.body["error"]["code"] == "slot_conflict"
    assert [c["id"] for c in res.body["error"]["details"]["conflicts"]] == [first["id"]]


@pytest.mark.parametrize(
    ("start", "minutes"),
    [
        ("2030-01-07T10:30:00Z", 15),  # inside
        ("2030-01-07T09:30:00Z", 60),  # overlaps the start
        ("2030-01-07T10:59:00Z", 60),  # overlaps the end
        ("2030-01-07T09:00:00Z", 180),  # contains it
        ("2030-01-07T11:30:00+01:00", 30),  # same instant range, other offset
    ],
)
def test_partial_overlaps_conflict_both_ways(api: ApiClient, start: str, minutes: int) -> None:
    # Given 10:00-11:00 booked
    api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z", 60))
    # When another interval overlapping it in any way is booked
    res = api.post("/appointments", json_body=slot(start, minutes))
    # Then it conflicts
    assert res.status == 409, res.body


def test_touching_intervals_do_not_conflict(api: ApiClient) -> None:
    assert api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z", 60)).status == 201
    assert api.post("/appointments", json_body=slot("2030-01-07T11:00:00Z", 60)).status == 201
    assert api.post("/appointments", json_body=slot("2030-01-07T09:00:00Z", 60)).status == 201


def test_other_resource_and_other_org_do_not_conflict(booking_fn: Any, api: ApiClient) -> None:
    room_a, room_b = str(uuid.uuid4()), str(uuid.uuid4())
    assert api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z", resource_id=room_a)).status == 201
    assert api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z", resource_id=room_b)).status == 201
    assert api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z")).status == 201  # default calendar
    other = ApiClient(booking_fn, new_org().member)
    assert (
        other.post("/appointments", json_body=slot("2030-01-07T10:00:00Z", resource_id=room_a)).status == 201
    )
    assert api.post("/appointments", json_body=slot("2030-01-07T10:30:00Z", resource_id=room_a)).status == 409


def test_cancelled_slot_is_free_again_and_cancel_twice_is_unchanged(api: ApiClient) -> None:
    appt = api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z")).body
    # When it is cancelled with a reason
    first = api.post(f"/appointments/{appt['id']}/cancel", json_body={"reason": "sick"})
    assert first.status == 200
    assert first.body["status"] == "cancelled"
    assert first.body["cancellation_reason"] == "sick"
    assert first.body["cancelled_at"] is not None
    # Then cancelling again answers 200 with the same, unchanged appointment
    again = api.post(f"/appointments/{appt['id']}/cancel", json_body={"reason": "other"})
    assert again.status == 200
    assert again.body == first.body
    # And the slot can be booked again
    assert api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z")).status == 201


def test_cancel_without_body(api: ApiClient) -> None:
    appt = api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z")).body
    res = api.request(
        "POST", f"/appointments/{appt['id']}/cancel", headers={"content-type": "application/json"}
    )
    assert res.status == 200
    assert res.body["cancellation_reason"] is None


def test_reschedule_moves_the_appointment_atomically(api: ApiClient) -> None:
    appt = api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z", 60)).body
    # When it moves 30 minutes later (overlapping its own old slot) with a new duration
    res = api.post(
        f"/appointments/{appt['id']}/reschedule",
        json_body={"scheduled_at": "2030-01-07T10:30:00Z", "duration_minutes": 45},
    )
    # Then the new one is scheduled, linked to the old, which is cancelled
    assert res.status == 200, res.body
    new, prev = res.body["appointment"], res.body["previous"]
    assert new["status"] == "scheduled"
    assert new["duration_minutes"] == 45
    assert new["rescheduled_from"] == appt["id"]
    assert new["contact_id"] == appt["contact_id"]
    assert prev["id"] == appt["id"]
    assert prev["status"] == "cancelled"
    assert prev["rescheduled_to"] == new["id"]
    # And the old slot's free part can be booked, the new one cannot
    assert api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z", 30)).status == 201
    assert api.post("/appointments", json_body=slot("2030-01-07T11:00:00Z", 10)).status == 409


def test_reschedule_into_a_conflict_leaves_the_original_untouched(api: ApiClient) -> None:
    appt = api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z")).body
    blocker = api.post("/appointments", json_body=slot("2030-01-07T14:00:00Z")).body
    res = api.post(
        f"/appointments/{appt['id']}/reschedule", json_body={"scheduled_at": "2030-01-07T14:30:00Z"}
    )
    assert res.status == 409
    assert [c["id"] for c in res.body["error"]["details"]["conflicts"]] == [blocker["id"]]
    assert api.get(f"/appointments/{appt['id']}").body == appt
    assert [h["action"] for h in api.get(f"/appointments/{appt['id']}/history").body["entries"]] == [
        "created"
    ]


def test_reschedule_of_a_cancelled_appointment_is_409(api: ApiClient) -> None:
    appt = api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z")).body
    api.post(f"/appointments/{appt['id']}/cancel", json_body={})
    res = api.post(
        f"/appointments/{appt['id']}/reschedule", json_body={"scheduled_at": "2030-01-08T10:00:00Z"}
    )
    assert res.status == 409
    assert res.body["error"]["code"] == "not_schedulable"


def test_history_shows_each_change_with_its_actor(api: ApiClient, org: Org) -> None:
    appt = api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z")).body
    moved = api.post(
        f"/appointments/{appt['id']}/reschedule", json_body={"scheduled_at": "2030-01-07T12:00:00Z"}
    ).body["appointment"]
    api.post(f"/appointments/{moved['id']}/cancel", json_body={"reason": "done"})
    actor = f"user:{org.member['sub']}"
    old = api.get(f"/appointments/{appt['id']}/history").body["entries"]
    assert [(h["action"], h["actor"]) for h in old] == [("created", actor), ("rescheduled", actor)]
    assert old[1]["changes"]["rescheduled_to"] == {"from": None, "to": moved["id"]}
    assert old[1]["changes"]["scheduled_at"]["to"].startswith("2030-01-07T12:00:00")
    new = api.get(f"/appointments/{moved['id']}/history").body["entries"]
    assert [(h["action"], h["actor"]) for h in new] == [("created", actor), ("cancelled", actor)]
    assert new[0]["changes"]["rescheduled_from"] == {"from": None, "to": appt["id"]}
    assert new[1]["changes"]["reason"] == {"from": None, "to": "done"}


def test_every_change_in_the_history_has_one_shape(api: ApiClient) -> None:
    # Given an appointment created, rescheduled, and its successor cancelled
    appt = api.post("/appointments", json_body=slot("2030-01-08T10:00:00Z")).body
    moved = api.post(
        f"/appointments/{appt['id']}/reschedule", json_body={"scheduled_at": "2030-01-08T12:00:00Z"}
    ).body["appointment"]
    api.post(f"/appointments/{moved['id']}/cancel", json_body={"reason": "done"})
    # When both histories are read
    entries = [
        entry
        for ident in (appt["id"], moved["id"])
        for entry in api.get(f"/appointments/{ident}/history").body["entries"]
    ]
    # Then every field of every entry's changes is {from, to}: what it was (null when the
    # appointment or the value did not exist before) and what it became
    assert len(entries) == 4
    for entry in entries:
        for field, change in entry["changes"].items():
            assert isinstance(change, dict) and set(change) == {"from", "to"}, (
                entry["action"],
                field,
                change,
            )
    created = entries[0]["changes"]
    assert created["scheduled_at"] == {"from": None, "to": "2030-01-08T10:00:00Z"}
    assert created["duration_minutes"] == {"from": None, "to": 60}


def test_idempotency_key_replays_the_first_answer(api: ApiClient, admin_conn: Any, org: Org) -> None:
    body = slot("2030-01-07T10:00:00Z")
    first = api.post("/appointments", json_body=body, headers={"idempotency-key": "k-1"})
    again = api.post("/appointments", json_body=body, headers={"idempotency-key": "k-1"})
    assert first.status == again.status == 201
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    count = admin_conn.execute(
        "SELECT count(*) FROM slotguard.appointments WHERE org_id = %s", (org.org_id,)
    ).fetchone()[0]
    assert count == 1


def test_idempotency_key_with_another_body_is_422(api: ApiClient) -> None:
    api.post("/appointments", json_body=slot("2030-01-07T10:00:00Z"), headers={"idempotency-key": "k-2"})
    res = api.post(
        "/appointments", json_body=slot("2030-01-07T15:00:00Z"), headers={"idempotency-key": "k-2"}
    )
    assert res.status == 422
    assert res.body["error"]["code"] == "idempotency_key_reused"


def test_idempotency_keys_are_per_org(booking_fn: Any, api: ApiClient) -> None:
    body = slot("2030-01-07T10:00:00Z")
    a = api.post("/appointments", json_body=body, headers={"idempotency-key": "shared"})
    b = ApiClient(booking_fn, new_org().member).post(
        "/appointments", json_body=body, headers={"idempotency-key": "shared"}
    )
    assert a.status == b.status == 201
    assert a.body["id"] != b.body["id"]


def test_list_filters_and_paginates(api: ApiClient) -> None:
    ids = [
        api.post("/appointments", json_body=slot(f"2030-02-0{d}T09:00:00Z")).body["id"] for d in range(1, 6)
    ]
    api.post(f"/appointments/{ids[1]}/cancel", json_body={})
    page1 = api.get(
        "/appointments", query={"from": "2030-02-01T00:00:00Z", "to": "2030-02-06T00:00:00Z", "limit": 2}
    )
    assert page1.status == 200
    assert [a["id"] for a in page1.body["items"]] == ids[:2]
    page2 = api.get(
        "/appointments",
        query={
            "from": "2030-02-01T00:00:00Z",
            "to": "2030-02-06T00:00:00Z",
            "limit": 2,
            "cursor": page1.body["next_cursor"],
        },
    )
    assert [a["id"] for a in page2.body["items"]] == ids[2:4]
    scheduled = api.get(
        "/appointments",
        query={"status": "scheduled", "from": "2030-02-01T00:00:00Z", "to": "2030-02-06T00:00:00Z"},
    )
    assert [a["id"] for a in scheduled.body["items"]] == [ids[0], *ids[2:]]
    assert scheduled.body["next_cursor"] is None


def test_paging_over_starts_with_fractions_of_a_second_skips_none_and_repeats_none(api: ApiClient) -> None:
    # Given three back-to-back appointments whose starts carry microseconds (the API keeps them)
    starts = ["2030-03-01T09:00:00.250000Z", "2030-03-01T10:00:00.500000Z", "2030-03-01T11:00:00.750000Z"]
    ids = []
    for start in starts:
        res = api.post("/appointments", json_body=slot(start))
        assert res.status == 201, res.body
        ids.append(res.body["id"])
    # When they are listed a page of one at a time, following next_cursor
    seen, cursor = [], None
    for _ in range(4):
        query: dict[str, Any] = {"from": "2030-03-01T00:00:00Z", "to": "2030-03-02T00:00:00Z", "limit": 1}
        if cursor:
            query["cursor"] = cursor
        page = api.get("/appointments", query=query).body
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then each appears once, in order
    assert seen == ids


def test_availability_check_and_free_slots(api: ApiClient) -> None:
    room = str(uuid.uuid4())
    booked = api.post("/appointments", json_body=slot("2030-03-01T10:00:00Z", 60, resource_id=room)).body
    busy = api.get(
        "/availability/check",
        query={"start": "2030-03-01T10:30:00Z", "duration_minutes": 30, "resource_id": room},
    )
    assert busy.status == 200
    assert busy.body["available"] is False
    assert [c["id"] for c in busy.body["conflicts"]] == [booked["id"]]
    free = api.get(
        "/availability/check",
        query={"start": "2030-03-01T11:00:00Z", "duration_minutes": 30, "resource_id": room},
    )
    assert free.body == {
        "available": True,
        "conflicts": [],
        "conflict_count": 0,
        "truncated": False,
        "rule_violation": None,
    }
    slots = api.get(
        "/availability/slots",
        query={
            "from": "2030-03-01T08:00:00Z",
            "to": "2030-03-01T13:00:00Z",
            "duration_minutes": 60,
            "step_minutes": 30,
            "resource_id": room,
        },
    )
    assert slots.status == 200
    starts = [s["start"][11:16] for s in slots.body["slots"]]
    assert starts == ["08:00", "08:30", "09:00", "11:00", "11:30", "12:00"]


def test_success_and_error_bodies_are_both_compact_json(booking_fn: ModuleType, org: Org) -> None:
    # When a client gets a success (a list) and an error (an unknown appointment)
    for path in ("/appointments", f"/appointments/{uuid.uuid4()}"):
        out = booking_fn.lambda_handler(http_api_event("GET", path, claims=org.member), LambdaContext())
        # Then both bodies are JSON in one form: compact, like the gateway's own answers
        assert out["body"] == json.dumps(json.loads(out["body"]), separators=(",", ":")), out["body"]


def test_every_timestamp_of_an_answer_is_utc_with_z(api: ApiClient) -> None:
    # Given an appointment booked in +02:00, rescheduled, with its history
    appt = api.post("/appointments", json_body=slot("2030-01-07T10:00:00+02:00")).body
    moved = api.post(
        f"/appointments/{appt['id']}/reschedule", json_body={"scheduled_at": "2030-01-07T12:00:00+02:00"}
    ).body
    history = api.get(f"/appointments/{appt['id']}/history").body
    slots = api.get(
        "/availability/slots",
        query={
            "from": "2030-01-07T00:00:00+02:00",
            "to": "2030-01-07T02:00:00+02:00",
            "duration_minutes": 60,
        },
    ).body
    # Then every timestamp in them, also inside the audit trail's changes, is written one way
    text = json.dumps([appt, moved, history, slots])
    stamps = re.findall(r'"(\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d))"', text)
    assert stamps and all(s.endswith("Z") for s in stamps), [s for s in stamps if not s.endswith("Z")]
    assert history["entries"][1]["changes"]["scheduled_at"] == {
        "from": "2030-01-07T08:00:00Z",
        "to": "2030-01-07T10:00:00Z",
    }


def test_an_expired_idempotency_key_not_yet_purged_is_not_replayed(
    api: ApiClient, admin_conn: Any, org: Org
) -> None:
    # Given a booking made with a key, whose key has expired but is not purged yet
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2031-05-02T10:00:00Z", "duration_minutes": 30}
    first = api.post("/appointments", json_body=body, headers={"Idempotency-Key": "expiring-1"})
    assert first.status == 201
    expired = admin_conn.execute(
        "UPDATE slotguard.booking_idempotency_keys SET expires_at = now() - interval '1 second'"
        " WHERE org_id = %s AND key LIKE '%%:expiring-1'",
        (org.org_id,),
    )
    assert expired.rowcount == 1
    # When the same request is sent again with the same key
    again = api.post("/appointments", json_body=body, headers={"Idempotency-Key": "expiring-1"})
    # Then it is not a replay: it is booked anew, and the slot the first holds makes it a 409
    assert "Idempotent-Replayed" not in again.headers
    assert again.status == 409, again.body
    assert [c["id"] for c in again.body["error"]["details"]["conflicts"]] == [first.body["id"]]


def test_a_cancelled_appointment_neither_makes_the_slot_unavailable_nor_shows_in_a_conflict(
    api: ApiClient,
) -> None:
    # Given an appointment that was cancelled, and an active one overlapping the same hour
    cancelled = api.post(
        "/appointments",
        json_body={
            "contact_id": str(uuid.uuid4()),
            "scheduled_at": "2031-05-03T10:00:00Z",
            "duration_minutes": 60,
        },
    ).body
    assert api.post(f"/appointments/{cancelled['id']}/cancel", json_body={}).status == 200
    # When its slot is checked
    check = api.get("/availability/check", query={"start": "2031-05-03T10:00:00Z", "duration_minutes": 60})
    # Then it is available, with no conflict
    assert (check.body["available"], check.body["conflict_count"], check.body["conflicts"]) == (True, 0, [])
    active = api.post(
        "/appointments",
        json_body={
            "contact_id": str(uuid.uuid4()),
            "scheduled_at": "2031-05-03T10:30:00Z",
            "duration_minutes": 60,
        },
    ).body
    # And a booking over both is refused naming the active one only
    refused = api.post(
        "/appointments",
        json_body={
            "contact_id": str(uuid.uuid4()),
            "scheduled_at": "2031-05-03T10:00:00Z",
            "duration_minutes": 60,
        },
    )
    assert refused.status == 409
    assert [c["id"] for c in refused.body["error"]["details"]["conflicts"]] == [active["id"]]
