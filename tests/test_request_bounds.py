"""What a request may be before any route code runs (issue 19): the media type is matched
case-insensitively on every route (RFC 9110), each route's body is bounded by what its schema
can need and refused with 413 before it is parsed, and the token's org_id claim is accepted
only in the canonical UUID form."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from slotguard.topology import ROUTES
from slotguard_local.functions import load_function
from tests.conftest import ApiClient, Org
from tests.webhook_support import Pipeline

JSON_ROUTES = [r for r in ROUTES if r.function in ("booking", "metrics")]


def booking_body(at: str = "2030-03-04T10:00:00Z") -> dict[str, Any]:
    return {"contact_id": str(uuid.uuid4()), "scheduled_at": at, "duration_minutes": 30}


def requests_for(route_key: str, appointment_id: str) -> tuple[str, dict[str, str], Any]:
    """A valid request of each JSON route: (path, query, body)."""
    path = {
        "/appointments/{appointment_id}": f"/appointments/{appointment_id}",
        "/appointments/{appointment_id}/cancel": f"/appointments/{appointment_id}/cancel",
        "/appointments/{appointment_id}/reschedule": f"/appointments/{appointment_id}/reschedule",
        "/appointments/{appointment_id}/history": f"/appointments/{appointment_id}/history",
        "/calendars/{calendar_id}/rules": "/calendars/default/rules",
        "/calendars/{calendar_id}/rules/history": "/calendars/default/rules/history",
    }.get(route_key.split(" ", 1)[1], route_key.split(" ", 1)[1])
    query = {
        "GET /availability/check": {"start": "2030-03-05T10:00:00Z", "duration_minutes": "30"},
        "GET /availability/slots": {
            "from": "2030-03-05T10:00:00Z",
            "to": "2030-03-05T12:00:00Z",
            "duration_minutes": "30",
        },
        "GET /webhook-metrics/delivery": {"webhook_id": "msg_none"},
    }.get(route_key, {})
    body = {
        "POST /appointments": booking_body(),
        "POST /appointments/{appointment_id}/cancel": {"reason": "changed plans"},
        "POST /appointments/{appointment_id}/reschedule": {"scheduled_at": "2030-03-06T10:00:00Z"},
        "POST /webhook-metrics/dead-letter-queue/redrive": {"job_ids": ["msg_none"]},
        "PUT /calendars/{calendar_id}/rules": {"time_zone": "Europe/Berlin", "min_notice_minutes": 0},
        "PUT /org/policy": {"contact_no_overlap": False},
    }.get(route_key)
    return path, query, body


@pytest.fixture
def clients(pipeline: Pipeline, booking_fn: Any, org: Org) -> dict[str, ApiClient]:
    return {
        "booking": ApiClient(booking_fn, org.admin),
        "metrics": ApiClient(load_function("metrics"), org.admin),
    }


# -- item 7: Content-Type is case-insensitive ----------------------------------------------------


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: r.route_key)
@pytest.mark.parametrize("content_type", ["Application/JSON", "APPLICATION/JSON; Charset=UTF-8"])
def test_the_media_type_is_case_insensitive_on_every_route(
    clients: dict[str, ApiClient], route: Any, content_type: str
) -> None:
    # Given an appointment to act on, and a valid request of the route
    booking = clients["booking"]
    appt = booking.post("/appointments", json_body=booking_body("2030-03-03T10:00:00Z")).body
    path, query, body = requests_for(route.route_key, appt["id"])
    client = clients[route.function]
    raw = json.dumps(body) if body is not None else None
    # When it is sent with application/json written in another case (with a body, and on the
    # routes that take one, without)
    res = client.request(
        route.method, path, raw_body=raw, query=query, headers={"content-type": content_type}
    )
    # Then it is served as application/json, never a 415 (the lookup of a webhook id nobody sent
    # answers its 404 not_found)
    if route.route_key == "GET /webhook-metrics/delivery":
        assert res.status == 404 and res.body["error"]["code"] == "not_found", res.body
    else:
        assert res.status < 300, (route.route_key, res.status, res.body)
    if body is not None:
        # And without a body it is answered as the lower-case type is (a 422 where one is required)
        same = client.request(route.method, path, query=query, headers={"content-type": content_type})
        canonical = client.request(
            route.method, path, query=query, headers={"content-type": "application/json"}
        )
        assert same.status == canonical.status != 415, (route.route_key, same.body, canonical.body)


def test_a_body_of_another_media_type_is_still_415_in_any_case(api: ApiClient) -> None:
    # When a body is sent as Text/Plain or as a type that only begins like JSON's
    for content_type in ("Text/Plain", "Application/JSONx"):
        res = api.post(
            "/appointments", raw_body=json.dumps(booking_body()), headers={"content-type": content_type}
        )
        # Then it is refused as before
        assert res.status == 415, (content_type, res.body)


def test_an_invalid_body_in_another_case_is_422_not_415(api: ApiClient) -> None:
    # Given a body that fails validation, sent as Application/Json
    res = api.post(
        "/appointments",
        raw_body=json.dumps({**booking_body(), "duration_minutes": 0}),
        headers={"content-type": "Application/Json"},
    )
    # Then the answer is the validation error, with its field
    assert res.status == 422, res.body
    assert res.body["error"]["details"]["errors"][0]["loc"][-1] == "duration_minutes"


# -- item 10: the org_id claim, canonical only ---------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        lambda u: "{" + u + "}",
        lambda u: "urn:uuid:" + u,
        lambda u: u.replace("-", ""),
        lambda u: u.upper(),
        lambda u: " " + u,
        lambda u: u[:8] + u[9:13] + "-" + u[8:9] + u[13:],  # hyphens elsewhere
    ],
    ids=["braces", "urn", "no-hyphens", "upper-case", "leading-space", "hyphens-moved"],
)
def test_an_org_id_claim_in_another_spelling_than_the_canonical_one_is_401(
    booking_fn: Any, org: Org, spelling: Any
) -> None:
    # Given the org's appointment, booked with the canonical claim
    ApiClient(booking_fn, org.member).post("/appointments", json_body=booking_body())
    # When a token names the same org in another spelling of its UUID
    claims = {**org.member, "org_id": spelling(org.org_id)}
    res = ApiClient(booking_fn, claims).get("/appointments")
    # Then it is refused as a token without a valid org_id, never mapped onto the org
    assert res.status == 401, res.body
    assert res.body["error"]["code"] == "unauthorized"


def test_the_canonical_org_id_claim_is_accepted(booking_fn: Any, org: Org) -> None:
    # Given a token whose org_id is the lower-case 8-4-4-4-12 form
    res = ApiClient(booking_fn, org.member).get("/appointments")
    # Then it is served
    assert res.status == 200, res.body


# -- item 9: each route's body is bounded by what its schema can need, 413 before parsing --------

ASTRAL = "\U0001f600"  # the longest character to spell in JSON: "\ud83d\ude00", 12 bytes


def largest_booking(at: str) -> dict[str, Any]:
    """The largest body POST /appointments can need: notes at 2000 characters, metadata at its
    8 KiB bound, each character sent as its longest escape."""
    from slotguard.models import MAX_METADATA_BYTES, MAX_NOTES_CHARS

    per_char = len(json.dumps(ASTRAL)) - 2
    filler = (MAX_METADATA_BYTES - len('{"k":""}')) // per_char
    return {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": at,
        "duration_minutes": 1440,
        "resource_id": str(uuid.uuid4()),
        "notes": ASTRAL * MAX_NOTES_CHARS,
        "metadata": {"k": ASTRAL * filler},
    }


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: r.route_key)
def test_a_body_beyond_what_the_route_can_need_is_413_before_it_is_parsed(
    clients: dict[str, ApiClient], route: Any
) -> None:
    # Given a body of 1 MiB that is not even JSON (parsing it would answer 400)
    path, query, _ = requests_for(route.route_key, str(uuid.uuid4()))
    raw = "[" * (1024 * 1024)
    if route.route_key == "POST /webhook-metrics/dead-letter-queue/redrive":
        raw *= 3  # its schema may need 1.5 MB: 1000 job ids of 255 characters, each escaped
    if route.route_key == "PUT /calendars/{calendar_id}/rules":
        raw *= 2  # a calendar's largest rules, indented, are 932 KB
    # When it is sent to the route
    res = clients[route.function].request(route.method, path, raw_body=raw, query=query)
    # Then it is refused for its size, before anything looks at it, saying the route's bound
    assert res.status == 413, (route.route_key, res.status, res.body)
    assert res.body["error"]["code"] == "payload_too_large"
    assert 0 < res.body["error"]["details"]["max_bytes"] < len(raw)


def test_a_base64_encoded_body_is_measured_by_the_bytes_it_decodes_to(api: ApiClient) -> None:
    # Given POST /appointments's bound, as its 413 states it
    bound = api.post("/appointments", raw_body="[" * (1024 * 1024)).body["error"]["details"]["max_bytes"]
    for size in range(bound - 2, bound + 4):
        # When a body of `size` bytes is sent as API Gateway sends a body that is not text: base64,
        # its length a multiple of four, padded with one or two '=' unless `size` divides by three
        res = api.post(
            "/appointments", raw_body=b"\xff" * size, headers={"content-type": "application/octet-stream"}
        )
        # Then up to the bound it is refused only for its media type, and past it for its size
        expected = ("unsupported_media_type", 415) if size <= bound else ("payload_too_large", 413)
        assert (res.body["error"]["code"], res.status) == expected, size
    assert res.body["error"]["message"] == f"the request body exceeds the {bound} bytes this route can need"


def test_a_text_body_is_measured_in_utf8_bytes_not_in_characters(api: ApiClient) -> None:
    # Given POST /appointments's bound, and a character of four bytes in UTF-8
    bound = api.post("/appointments", raw_body="[" * (1024 * 1024)).body["error"]["details"]["max_bytes"]
    # When a body of that character fills the bound to the byte, or one character more
    within = api.post("/appointments", raw_body=ASTRAL * (bound // 4))
    beyond = api.post("/appointments", raw_body=ASTRAL * (bound // 4 + 1))
    # Then the first is read (and refused as not JSON), the second refused for its size though
    # it has a quarter as many characters as the bound has bytes
    assert (within.status, within.body["error"]["code"]) == (400, "malformed_json")
    assert (beyond.status, beyond.body["error"]["code"]) == (413, "payload_too_large")
    # And a body of exactly as many characters as the bound has bytes, one of them of four bytes,
    # is refused too
    one_over = api.post("/appointments", raw_body=ASTRAL + "[" * (bound - 1))
    assert (one_over.status, one_over.body["error"]["code"]) == (413, "payload_too_large")


def test_the_largest_rules_the_schema_allows_are_within_the_bound_even_indented(
    clients: dict[str, ApiClient],
) -> None:
    from datetime import date, timedelta

    from slotguard.models import MAX_DATE_OVERRIDES, MAX_INTERVALS_PER_DAY, WEEKDAYS

    # Given a calendar's rules at every bound, indented by 4 as a person might write them
    day = [{"start": f"{h:02d}:00", "end": f"{h:02d}:30"} for h in range(MAX_INTERVALS_PER_DAY)]
    rules = {
        "time_zone": "America/Argentina/ComodRivadavia",
        "weekly_hours": dict.fromkeys(WEEKDAYS, day),
        "date_overrides": {str(date(2031, 1, 1) + timedelta(days=n)): day for n in range(MAX_DATE_OVERRIDES)},
    }
    text = json.dumps(rules, indent=4)
    # When an admin sets them
    res = clients["booking"].request("PUT", "/calendars/default/rules", raw_body=text)
    # Then they are taken, not refused for their size
    assert res.status == 200, (len(text), res.status, str(res.body)[:300])


def test_the_largest_booking_the_schema_allows_is_within_the_bound_and_booked(api: ApiClient) -> None:
    # Given the largest valid booking, every character escaped, compact and pretty-printed
    for day, indent in ((10, None), (11, 4)):
        text = json.dumps(largest_booking(f"2030-03-{day}T10:00:00.123456+14:00"), indent=indent)
        # When it is booked
        res = api.post("/appointments", raw_body=text)
        # Then it is booked, not refused for its size
        assert res.status == 201, (len(text), res.body)


def test_the_largest_reason_and_redrive_the_schemas_allow_are_within_their_bounds(
    clients: dict[str, ApiClient],
) -> None:
    # Given an appointment, and a cancellation whose 500-character reason is escaped throughout
    appt = clients["booking"].post("/appointments", json_body=booking_body("2030-03-20T10:00:00Z")).body
    reason = json.dumps({"reason": ASTRAL * 500})
    # When it is cancelled with it
    res = clients["booking"].post(f"/appointments/{appt['id']}/cancel", raw_body=reason)
    # Then it is cancelled
    assert res.status == 200, res.body
    # And a redrive naming 1000 job ids of 255 characters, each written as a \u escape, is served
    job_id = "".join(f"\\u{ord(c):04x}" for c in "m" * 255)
    redrive = '{"job_ids": [' + ", ".join(f'"{job_id}"' for _ in range(1000)) + "]}"
    res = clients["metrics"].post("/webhook-metrics/dead-letter-queue/redrive", raw_body=redrive)
    assert res.status == 200, res.body
