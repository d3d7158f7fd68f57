"""What a client or an attacker sends can break neither the data nor the API: times outside
the booking window, bytes that are not UTF-8 JSON, text PostgreSQL cannot store, slot searches
sized to saturate the database, idempotency keys aimed at a webhook's."""

from __future__ import annotations

import json
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.conftest import ApiClient, Org, new_org, signed_headers
from tests.webhook_support import Pipeline


def count_rows(admin_conn: Any, org: Org) -> int:
    row = admin_conn.execute(
        "SELECT count(*) FROM slotguard.appointments WHERE org_id = %s", (org.org_id,)
    ).fetchone()
    return int(row[0])


def body(**overrides: Any) -> dict[str, Any]:
    out = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2030-01-07T10:00:00Z", "duration_minutes": 30}
    out.update(overrides)
    return out


# -- 1. the booking window -----------------------------------------------------------------

# The window's refusal as a client reads it (README, "The booking window")
WINDOW_MESSAGE = (
    "times must be RFC 3339 with an offset of -12:00..+14:00 and a year of 1970..2199"
    " (the booking window; filters may use 1969..2200)"
)


def window_refusal(*loc: str) -> dict[str, Any]:
    return {
        "error": {
            "code": "validation_error",
            "message": "the request is not valid",
            "details": {
                "errors": [
                    {"loc": list(loc), "msg": f"Value error, {WINDOW_MESSAGE}", "type": "value_error"}
                ],
                "error_count": 1,
                "truncated": False,
            },
        }
    }


@pytest.mark.parametrize(
    ("scheduled_at", "minutes"),
    [
        ("9999-12-31T23:00:00-05:00", 30),  # ends in year 10000
        ("0001-01-01T00:00:00+14:00", 30),  # a BC timestamp in UTC
        ("2200-01-01T00:00:00Z", 30),  # the year after the window
        ("1969-12-31T23:59:00Z", 30),
        ("2030-01-01T00:00:00+14:30", 30),  # an offset no place on earth uses
        ("2030-02-29T10:00:00Z", 30),  # no such day
    ],
)
def test_a_booking_outside_the_window_is_422_and_writes_nothing(
    api: ApiClient, admin_conn: Any, org: Org, scheduled_at: str, minutes: int
) -> None:
    # When a booking lies (partly) outside the booking window
    res = api.post("/appointments", json_body=body(scheduled_at=scheduled_at, duration_minutes=minutes))
    # Then it is refused with the window's field error on scheduled_at, and nothing is stored
    assert (res.status, res.body) == (422, window_refusal("body", "scheduled_at"))
    assert count_rows(admin_conn, org) == 0
    # And the org's reads keep working
    assert api.get("/appointments").status == 200


def test_a_reschedule_outside_the_window_is_422_and_leaves_the_original(api: ApiClient) -> None:
    # Given an appointment of 30 minutes
    appt = api.post("/appointments", json_body=body()).body
    # When it is moved to where it would end outside the window (its own duration, or a new one)
    for move in (
        {"scheduled_at": "2200-01-01T00:00:00+14:00"},
        {"scheduled_at": "9999-12-31T23:00:00-05:00", "duration_minutes": 30},
    ):
        res = api.post(f"/appointments/{appt['id']}/reschedule", json_body=move)
        # Then it is refused, and the original is untouched
        assert res.status == 422, res.body
        assert "booking window" in json.dumps(res.body)
    assert api.get(f"/appointments/{appt['id']}").body == appt


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/appointments", {"from": "0001-01-01T00:00:00+14:00"}),
        ("/availability/check", {"start": "9999-12-31T23:00:00-12:00", "duration_minutes": 1440}),
        ("/availability/check", {"start": "2201-01-01T00:00:00Z", "duration_minutes": 120}),
        (
            "/availability/slots",
            {"from": "9999-12-01T00:00:00Z", "to": "9999-12-31T23:59:00-12:00", "duration_minutes": 60},
        ),
    ],
)
def test_queries_outside_the_window_are_422(api: ApiClient, path: str, query: dict[str, Any]) -> None:
    res = api.get(path, query=query)
    assert res.status == 422, res.body
    assert "booking window" in json.dumps(res.body)


def test_the_table_and_the_functions_refuse_the_window_too(pg: Any, admin_conn: Any) -> None:
    # Given a caller of the SQL API that skips the models
    org = uuid.uuid4()
    with psycopg.connect(pg.app_url, autocommit=True) as conn:
        # When it books in year 9999 (ending in 10000)
        # Then the function refuses: the table's CHECK holds whatever the caller
        with pytest.raises(psycopg.errors.CheckViolation, match="appointments_booking_window"):
            conn.execute(
                "SELECT slotguard.book_appointment_with_lock(%s, 't', %s, NULL, %s, 30)",
                (org, uuid.uuid4(), "9999-12-31T23:00:00-05:00"),
            )
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="booking window"):
            conn.execute(
                "SELECT slotguard.find_free_slots(%s, NULL, %s, %s, 30, 30)",
                (org, "9999-12-01T00:00:00Z", "9999-12-02T00:00:00Z"),
            )
    assert admin_conn.execute(
        "SELECT count(*) FROM slotguard.appointments WHERE org_id = %s", (org,)
    ).fetchone() == (0,)


# -- 3. bytes and types no route may choke on -------------------------------------------------

NOT_UTF8_JSON = (400, "malformed_json", "the request body is not valid UTF-8 JSON")
NOT_AN_OBJECT = (422, "validation_error", "the request body must be a JSON object")
# Each body, and the one answer every POST route gives it (status, code, message)
BAD_BODIES = [
    pytest.param(b"\x8f\x2b\xaf", NOT_UTF8_JSON, id="not-utf8"),
    pytest.param(b"\xff\xfe{\x00}\x00", NOT_UTF8_JSON, id="utf16-bom"),
    pytest.param(b"null", NOT_AN_OBJECT, id="null"),
    pytest.param(b"[]", NOT_AN_OBJECT, id="array"),
    pytest.param(b'"text"', NOT_AN_OBJECT, id="string"),
    pytest.param(b"12", NOT_AN_OBJECT, id="number"),
    pytest.param(b"{not json", NOT_UTF8_JSON, id="not-json"),
    pytest.param(
        b'{"reason": "\\udaf4"}',
        (422, "validation_error", "the request body must be valid Unicode (no unpaired surrogates)"),
        id="lone-surrogate",
    ),
    pytest.param(
        b'{"reason": "a\\u0000b"}',
        (422, "validation_error", "the request body must not contain NUL (\\u0000) characters"),
        id="nul",
    ),
]


@pytest.mark.parametrize(("raw", "answer"), BAD_BODIES)
def test_every_booking_post_route_answers_bad_bodies_with_4xx_and_the_envelope(
    api: ApiClient, admin_conn: Any, org: Org, raw: bytes, answer: tuple[int, str, str]
) -> None:
    # Given an appointment
    appt = api.post("/appointments", json_body=body()).body
    before = admin_conn.execute(
        "SELECT count(*) FROM slotguard.appointment_audit WHERE org_id = %s", (org.org_id,)
    ).fetchone()
    for path in (
        "/appointments",
        f"/appointments/{appt['id']}/cancel",
        f"/appointments/{appt['id']}/reschedule",
    ):
        # When a route gets a body that is not UTF-8, not JSON, or not an object
        res = api.post(path, raw_body=raw)
        # Then the answer is its 400/422 in the error envelope, the same on every route, never a 500
        assert (res.status, res.body["error"]["code"], res.body["error"]["message"]) == answer, path
        assert set(res.body["error"]) == {"code", "message", "details"}
    # And nothing was written
    assert count_rows(admin_conn, org) == 1
    after = admin_conn.execute(
        "SELECT count(*) FROM slotguard.appointment_audit WHERE org_id = %s", (org.org_id,)
    ).fetchone()
    assert before == after
    assert api.get(f"/appointments/{appt['id']}").body["status"] == "scheduled"


@pytest.mark.parametrize(
    "overrides",
    [
        {"notes": "\udaf4"},
        {"notes": "a\x00b"},
        {"metadata": {"k": "\udaf4"}},
        {"metadata": {"k\x00": 1}},
        {"metadata": {"deep": [{"x": "a\x00"}]}},
    ],
)
def test_text_postgres_cannot_store_is_422(api: ApiClient, admin_conn: Any, org: Org, overrides: Any) -> None:
    raw = json.dumps(body(**overrides))  # ensure_ascii: the bad characters travel as \u escapes
    res = api.post("/appointments", raw_body=raw)
    assert res.status == 422, res.body
    assert count_rows(admin_conn, org) == 0


@pytest.mark.parametrize(("raw", "answer"), BAD_BODIES)
def test_the_redrive_route_answers_bad_bodies_with_4xx(
    pipeline: Pipeline, raw: bytes, answer: tuple[int, str, str]
) -> None:
    from slotguard_local.functions import load_function

    metrics = ApiClient(load_function("metrics"), new_org().admin)
    res = metrics.post("/webhook-metrics/dead-letter-queue/redrive", raw_body=raw)
    assert (res.status, res.body["error"]["code"], res.body["error"]["message"]) == answer
    assert set(res.body["error"]) == {"code", "message", "details"}


def test_a_cancel_without_a_body_still_works(api: ApiClient) -> None:
    appt = api.post("/appointments", json_body=body()).body
    res = api.request("POST", f"/appointments/{appt['id']}/cancel", headers={"content-type": ""})
    assert res.status == 200, res.body
    assert res.body["status"] == "cancelled"


# -- 2. bounded slot searches -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "searched_to", "next_from"),
    [
        # 31 days at a 1-minute step was 44,640 candidates; steps of 5 and 3000 candidates now
        (
            {"from": "2030-01-01T00:00:00Z", "to": "2030-02-01T00:00:00Z", "duration_minutes": 1},
            "2030-01-11T09:56:00Z",
            "2030-01-11T10:00:00Z",
        ),
        # 62 days at a day's step: 31 days at most
        (
            {"from": "2030-01-01T00:00:00Z", "to": "2030-03-04T00:00:00Z", "duration_minutes": 1440},
            "2030-02-01T00:00:00Z",
            "2030-02-01T00:00:00Z",
        ),
    ],
)
def test_a_slot_search_is_bounded_and_says_where_to_continue(
    api: ApiClient, query: dict[str, Any], searched_to: str, next_from: str
) -> None:
    res = api.get("/availability/slots", query=query)
    assert res.status == 200, res.body
    assert len(res.body["slots"]) <= 3000
    assert (res.body["searched_to"], res.body["next_from"]) == (searched_to, next_from)
    # And continuing from next_from picks up where the first answer stopped
    more = api.get("/availability/slots", query={**query, "from": res.body["next_from"]})
    assert more.status == 200, more.body
    assert more.body["slots"][0]["start"] == next_from


SEARCH_FROM = datetime(2030, 1, 1, tzinfo=UTC)


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def slot_search(api: ApiClient, end: datetime, minutes: int, **more: Any) -> Any:
    query = {"from": z(SEARCH_FROM), "to": z(end), "duration_minutes": minutes, **more}
    res = api.get("/availability/slots", query=query)
    assert res.status == 200, res.body
    return res.body


def test_the_largest_slot_search_answers_whole_and_one_step_more_is_continued(api: ApiClient) -> None:
    # Given a free calendar, and searches of 5-minute slots every 5 minutes
    step = timedelta(minutes=5)
    last_start = SEARCH_FROM + step * 2999  # the 3000th candidate
    # When the range holds exactly 3000 candidates (the bound)
    whole = slot_search(api, last_start + step, 5)
    # Then every one of them is offered and the search is complete
    assert len(whole["slots"]) == 3000
    assert (whole["slots"][0]["start"], whole["slots"][-1]["start"]) == (z(SEARCH_FROM), z(last_start))
    assert (whole["searched_to"], whole["next_from"]) == (z(last_start + step), None)
    # When the range holds one candidate more
    more = slot_search(api, last_start + 2 * step, 5)
    # Then the same 3000 are offered, and the answer says to continue where the 3001st starts
    assert more["slots"] == whole["slots"]
    assert (more["searched_to"], more["next_from"]) == (z(last_start + step), z(last_start + step))
    rest = api.get(
        "/availability/slots",
        query={"from": more["next_from"], "to": z(last_start + 2 * step), "duration_minutes": 5},
    ).body
    assert [s["start"] for s in rest["slots"]] == [z(last_start + step)]
    assert rest["next_from"] is None


def test_the_longest_slot_search_is_31_days_and_one_step_more_is_continued(api: ApiClient) -> None:
    # Given a free calendar, and searches of day-long slots, a day apart
    day = timedelta(days=1)
    # When the range is exactly 31 days, then 31 days and one step
    whole = slot_search(api, SEARCH_FROM + 31 * day, 1440)
    more = slot_search(api, SEARCH_FROM + 32 * day, 1440)
    # Then the 31 days are searched whole, and one day more is left for the continuation
    assert [s["start"] for s in whole["slots"]] == [z(SEARCH_FROM + n * day) for n in range(31)]
    assert (whole["searched_to"], whole["next_from"]) == (z(SEARCH_FROM + 31 * day), None)
    assert more["slots"] == whole["slots"]
    assert (more["searched_to"], more["next_from"]) == (z(SEARCH_FROM + 31 * day), z(SEARCH_FROM + 31 * day))


def test_a_step_below_five_minutes_is_422(api: ApiClient) -> None:
    res = api.get(
        "/availability/slots",
        query={
            "from": "2030-01-01T00:00:00Z",
            "to": "2030-01-01T01:00:00Z",
            "duration_minutes": 5,
            "step_minutes": 4,
        },
    )
    assert res.status == 422, res.body


@pytest.mark.parametrize(
    ("start", "end"),
    [("2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z"), ("2030-01-02T00:00:00Z", "2030-01-01T00:00:00Z")],
)
def test_an_empty_range_is_an_empty_answer(api: ApiClient, start: str, end: str) -> None:
    # Given an appointment that spans both ends of the (empty) range
    api.post("/appointments", json_body=body(scheduled_at="2029-12-31T23:00:00Z", duration_minutes=1440))
    # When a range whose start is not before its end is searched or listed
    slots = api.get("/availability/slots", query={"from": start, "to": end, "duration_minutes": 30})
    page = api.get("/appointments", query={"from": start, "to": end})
    # Then the answer is empty, not an error
    assert (slots.status, slots.body["slots"]) == (200, []), slots.body
    assert (page.status, page.body["items"]) == (200, []), page.body


def test_the_database_refuses_a_slot_search_of_one_candidate_past_the_bound(pg: Any) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with psycopg.connect(pg.app_url, autocommit=True) as conn:
        # When a caller of the SQL API asks for exactly 3000 start times (5-minute slots, every 5
        # minutes, over 15,000 minutes), with room to list all of them
        found = conn.execute(
            "SELECT slotguard.find_free_slots(%s, NULL, %s, %s, 5, 5, 5000)",
            (uuid.uuid4(), start, start + timedelta(minutes=15000)),
        ).fetchone()[0]
        # Then it searches them all
        assert len(found) == 3000
        # When it asks for one start time more (or for every minute of 31 days)
        for end, step in ((start + timedelta(minutes=15005), 5), (start + timedelta(days=31), 1)):
            # Then the function refuses, naming the bound
            with pytest.raises(psycopg.Error) as refused:
                conn.execute(
                    "SELECT slotguard.find_free_slots(%s, NULL, %s, %s, 5, %s)",
                    (uuid.uuid4(), start, end, step),
                )
            assert refused.value.sqlstate == "22023", refused.value  # invalid_parameter_value
            assert refused.value.diag.message_primary == (
                "the search may test at most 3000 start times"
                if step == 5
                else "duration_minutes must be 1..1440 and step_minutes 5..1440"
            )


def _execution_ms(conn: Any, org: uuid.UUID, start: datetime, end: datetime, step: int) -> float:
    plan = conn.execute(
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT slotguard.find_free_slots(%s, NULL, %s, %s, 5, %s)",
        (org, start, end, step),
    ).fetchone()[0]
    return float(plan[0]["Execution Time"])


def test_the_worst_allowed_slot_search_stays_cheap(pg: Any) -> None:
    # Given a calendar crafted against the search: a 1-minute appointment every 10 minutes of 31
    # days (4,464 of them), so no candidate is free and each one must be tested
    org = uuid.uuid4()
    start = datetime(2031, 1, 1, tzinfo=UTC)
    with psycopg.connect(pg.app_url, autocommit=True) as conn:
        for i in range(31 * 24 * 6):
            conn.execute(
                "SELECT slotguard.book_appointment_with_lock(%s, 't', %s, NULL, %s, 1)",
                (org, uuid.uuid4(), start + timedelta(minutes=10 * i + 3)),
            )
        # When the worst search the API allows runs (3,000 candidates over those 31 days)
        # beside a trivial one (one hour, one candidate)
        worst, trivial = [], []
        for _ in range(5):
            worst.append(_execution_ms(conn, org, start, start + timedelta(days=31), 15))
            trivial.append(_execution_ms(conn, org, start, start + timedelta(minutes=5), 5))
        ratio = statistics.median(worst) / statistics.median(trivial)
    # Then it costs a bounded multiple of the trivial call (the unbounded search of 44,640
    # candidates by per-candidate index probes cost ~1000x)
    print(
        f"worst slot search {statistics.median(worst):.1f} ms vs trivial {statistics.median(trivial):.2f} ms"
    )
    assert ratio < 150, (worst, trivial)


# -- 6. idempotency key spaces and webhook ids ------------------------------------------------


def test_an_http_client_cannot_reach_a_webhooks_idempotency_key(pipeline: Pipeline, booking_fn: Any) -> None:
    # Given an org with a webhook secret, and a member who knows a webhook id before it arrives
    org_id, secret = pipeline.new_org()
    member = ApiClient(booking_fn, {"sub": "mallory", "org_id": org_id})
    pre_empt_body = json.dumps(body(scheduled_at="2030-03-01T10:00:00Z"))
    pre_empt = member.post(
        "/appointments",
        raw_body=pre_empt_body,
        headers={"idempotency-key": "webhook:msg_known"},
    )
    assert pre_empt.status == 201
    # When the webhook with that id books another slot
    webhook_id = pipeline.send(
        org_id,
        secret,
        "appointment.book",
        body(scheduled_at="2030-03-01T12:00:00Z"),
        webhook_id="msg_known",
    )
    source = pipeline.event_source()
    pipeline.drain(source, lambda: any(r["status"] == "completed" for r in pipeline.rows(org_id)))
    # Then the webhook booked its own slot: the member's key did not pre-empt it
    [row] = pipeline.rows(org_id)
    assert row["job_id"] == webhook_id
    assert row["outcome"] == "applied", row
    starts = sorted(a["scheduled_at"].isoformat() for a in pipeline.appointments(org_id))
    assert starts == ["2030-03-01T10:00:00+00:00", "2030-03-01T12:00:00+00:00"]
    # And the member's key still names only the member's own booking
    replay = member.post(
        "/appointments",
        json_body=json.loads(pre_empt_body),
        headers={"idempotency-key": f"webhook:{webhook_id}"},
    )
    assert replay.status == 201
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.body["id"] == pre_empt.body["id"]


def test_a_long_webhook_id_is_400_at_the_receiver_and_a_255_char_one_completes(pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    payload = json.dumps({"type": "appointment.book", "timestamp": "2030-01-01T00:00:00Z", "data": body()})
    # When a webhook id is longer than the delivery log can hold
    status, answer = pipeline.post(org_id, payload, signed_headers(secret, "m" * 256, payload))
    # Then the receiver says so, with the bound, and nothing is queued
    assert status == 400, answer
    assert answer == {
        "error": {
            "code": "bad_request",
            "message": "the webhook-id header must be 1..255 printable ASCII characters",
            "details": {"max_chars": 255},
        }
    }
    assert pipeline.queues.depth(pipeline.sqs) == 0
    # And the longest allowed id books once and completes (it used to overflow the key and dead-letter)
    long_id = "m" * 255
    status, answer = pipeline.post(org_id, payload, signed_headers(secret, long_id, payload))
    assert status == 202, answer
    source = pipeline.event_source()
    pipeline.drain(source, lambda: any(r["status"] != "processing" for r in pipeline.rows(org_id)))
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["outcome"]) == ("completed", "applied"), row
    assert len(pipeline.appointments(org_id)) == 1


@pytest.mark.parametrize(
    ("data_json", "message"),
    [
        ('{"notes": "\\udaf4"}', "the payload must be valid Unicode (no unpaired surrogates)"),
        ('{"metadata": {"k": "a\\u0000"}}', "the payload must not contain NUL (\\u0000) characters"),
    ],
)
def test_a_signed_webhook_postgres_cannot_store_is_400(
    pipeline: Pipeline, data_json: str, message: str
) -> None:
    # Given a signed webhook whose payload holds text PostgreSQL's jsonb cannot store
    org_id, secret = pipeline.new_org()
    payload = '{"type": "appointment.book", "timestamp": "2030-01-01T00:00:00Z", "data": ' + data_json + "}"
    # When it is posted, Then it is refused for good, saying what in it cannot be stored
    status, answer = pipeline.post(org_id, payload, signed_headers(secret, "msg_bad_text", payload))
    assert status == 400, answer
    assert answer == {"error": {"code": "bad_request", "message": message, "details": {}}}
    assert pipeline.queues.depth(pipeline.sqs) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_sent_as_json_is_415(api: ApiClient, content_type: str) -> None:
    appt = api.post("/appointments", json_body=body()).body
    for path in (
        "/appointments",
        f"/appointments/{appt['id']}/cancel",
        f"/appointments/{appt['id']}/reschedule",
    ):
        res = api.post(path, raw_body='{"reason": null}', headers={"content-type": content_type})
        assert res.status == 415, (path, res.body)
        assert res.body["error"]["code"] == "unsupported_media_type"


# -- 7. personal data stays out of what the metrics API shows ---------------------------------


def test_a_drivers_error_detail_never_reaches_the_delivery_log(pipeline: Pipeline) -> None:
    from slotguard.services.webhook_events import EventContext, Outcome
    from slotguard_local.functions import load_function

    # Given a handler that fails with a database error whose message carries a bind value
    def leaky(ctx: EventContext, data: Any) -> Outcome:
        raise psycopg.errors.UniqueViolation(
            'duplicate key value violates unique constraint "x" DETAIL: Key (notes)=(secret-diagnosis)'
        )

    pipeline.customize.append(lambda service: service.register("test.leaky", leaky))
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "test.leaky", {"notes": "secret-diagnosis"})
    # When it is processed until it gives up
    pipeline.drain(
        pipeline.event_source(), lambda: any(r["status"] == "dead_letter" for r in pipeline.rows(org_id))
    )
    # Then the log row and the metrics API name the error's class, never its detail
    [row] = pipeline.rows(org_id)
    assert "secret-diagnosis" not in row["error_message"]
    assert row["error_message"].startswith("UniqueViolation")
    member = ApiClient(load_function("metrics"), {"sub": "m", "org_id": org_id})
    failures = member.get("/webhook-metrics/recent-failures").body
    assert "secret-diagnosis" not in json.dumps(failures)
    assert failures["items"][0]["error_message"] == row["error_message"]


# -- found by a security review: depth, non-finite numbers, parser limits, BOMs ----------------


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(json.dumps(body(metadata=nested(300))), 422, id="metadata-300-deep"),
        pytest.param(json.dumps(body(metadata=nested(40))), 422, id="metadata-40-deep"),
        pytest.param(json.dumps(body()).replace("}", ', "metadata": {"x": NaN}}'), 400, id="nan"),
        pytest.param(json.dumps(body()).replace("}", ', "metadata": {"x": 1e400}}'), 422, id="overflow"),
        pytest.param('{"a":' * 1000 + "1" + "}" * 1000, 400, id="recursion"),
        pytest.param('{"n": ' + "9" * 5000 + "}", 400, id="huge-integer"),
        pytest.param("\ufeff" + json.dumps(body()), 400, id="bom"),
    ],
)
def test_json_the_api_could_not_store_or_answer_is_refused_cleanly(
    api: ApiClient, admin_conn: Any, org: Org, raw: str, status: int
) -> None:
    # When a body parses (or nearly) but holds what could not be stored or answered back
    res = api.post("/appointments", raw_body=raw, headers={"idempotency-key": "k1"})
    # Then it is a clean 400/422 in the envelope, and nothing is stored
    assert res.status == status, res.body
    assert set(res.body["error"]) == {"code", "message", "details"}
    assert count_rows(admin_conn, org) == 0
    # And the org's reads keep working
    assert api.get("/appointments").status == 200


def test_metadata_nested_within_the_bound_round_trips(api: ApiClient) -> None:
    res = api.post("/appointments", json_body=body(metadata=nested(30)))
    assert res.status == 201, res.body
    assert api.get(f"/appointments/{res.body['id']}").body["metadata"] == nested(30)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('{"type": "t", "data": ' + json.dumps(nested(300)) + "}", id="deep"),
        pytest.param('{"type": "t", "data": {"x": NaN}}', id="nan"),
        pytest.param('{"type": "t", "data": {"x": 1e400}}', id="overflow"),
        pytest.param('{"type": "t", "data": ' + "[" * 1000 + "]" * 1000 + "}", id="recursion"),
        pytest.param("\ufeff" + '{"type": "t", "data": {}}', id="bom"),
    ],
)
def test_a_signed_webhook_that_could_never_be_recorded_is_400(pipeline: Pipeline, payload: str) -> None:
    org_id, secret = pipeline.new_org()
    status, answer = pipeline.post(org_id, payload, signed_headers(secret, "msg_unrecordable", payload))
    assert status == 400, answer
    assert pipeline.queues.depth(pipeline.sqs) == 0


def test_an_invalid_webhook_payloads_error_names_fields_not_values(pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    pipeline.send(
        org_id, secret, "appointment.book", {"contact_id": "private-name-xyz", "duration_minutes": 0}
    )
    pipeline.event_source().poll_once()
    [row] = pipeline.rows(org_id)
    assert row["status"] == "dead_letter"
    assert "contact_id" in row["error_message"]
    assert "private-name-xyz" not in row["error_message"]


def test_text_limits_count_the_text_as_sent(api: ApiClient) -> None:
    # Given an appointment, and a reason within 500 characters only once its whitespace is stripped
    appt = api.post("/appointments", json_body=body()).body
    padded = "late" + "\t" * 600
    # When it is cancelled with that reason
    res = api.post(f"/appointments/{appt['id']}/cancel", json_body={"reason": padded})
    # Then the limit the schema states (maxLength 500) holds for the text as sent
    assert res.status == 422, res.body
    assert api.get(f"/appointments/{appt['id']}").body["status"] == "scheduled"
