"""What a sender reads of an appointment.cancel webhook: the delivery log's error message of an
invalid one (its field errors as whole JSON, within the log's 2,000 characters to the character,
the errors that do not fit counted in a last entry), and the outcome of a valid one, its reason
kept in the appointment's history. Real signed webhooks on moto's SQS, the processor on real
Postgres, read through the metrics and booking functions' handlers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from slotguard_local.functions import load_function
from tests.conftest import ApiClient
from tests.webhook_support import Pipeline, book_data

EVENT = "appointment.cancel"
PREFIX = f"data is not valid for {EVENT}: "
BOUND = 2000  # what the delivery log keeps of an error message, in characters


def unknown(key: str) -> dict[str, Any]:
    """The field error of a key CancelData does not know, as the API answers it."""
    return {"loc": ["data", key], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}


def more(count: int) -> dict[str, Any]:
    """The last entry, counting the errors left out."""
    return {"loc": ["data"], "msg": f"{count} more error(s)", "type": "more_errors"}


def message(entries: list[dict[str, Any]]) -> str:
    return PREFIX + json.dumps(entries, ensure_ascii=False)


def entries_of(keys: list[str], shown: int) -> list[dict[str, Any]]:
    """The first `shown` keys' errors, then the count of the rest (if any are left)."""
    left = len(keys) - shown
    return [unknown(k) for k in keys[:shown]] + ([more(left)] if left else [])


def keys_filling(count: int, shown: int, length: int, pad: str) -> list[str]:
    """`count` unknown keys, padded with `pad`, such that the message of their first `shown`
    errors (and the entry counting the rest) is exactly `length` characters long; the keys after
    those are as long as the last padded one."""
    keys = [f"field_{i:02d}_" for i in range(count)]
    slack = length - len(message(entries_of(keys, shown)))
    each, rest = divmod(slack, shown)
    keys = [k + pad * (each + (1 if i < rest else 0)) for i, k in enumerate(keys[:shown])] + [
        k + pad * each for k in keys[shown:]
    ]
    assert len(message(entries_of(keys, shown))) == length
    return keys


def settled(p: Pipeline, org_id: str, n: int) -> Any:
    return lambda: sum(r["status"] in ("completed", "dead_letter") for r in p.rows(org_id)) >= n


def claims(org_id: str) -> dict[str, Any]:
    return {"sub": f"user-{uuid.uuid4().hex[:6]}", "org_id": org_id}


@pytest.fixture
def metrics_fn(pipeline: Pipeline) -> Any:
    return load_function("metrics")


def lookup(metrics_fn: Any, org_id: str, webhook_id: str) -> dict[str, Any]:
    res = ApiClient(metrics_fn, claims(org_id)).get(
        "/webhook-metrics/delivery", query={"webhook_id": webhook_id}
    )
    assert res.status == 200, res.body
    body: dict[str, Any] = res.body
    return body


# (unknown keys, errors whose message with the count of the rest is `length` long, length,
# padding character of the keys, errors the sender reads)
CASES = {
    # 12 errors and "18 more error(s)" make exactly 2,000 characters: all 12 are kept
    "exactly the bound, with the count of the rest": (30, 12, BOUND, "x", 12),
    # one character more: the 12th no longer fits, "19 more error(s)" are counted
    "one character over the bound": (30, 12, BOUND + 1, "x", 11),
    # all 12 errors make exactly 2,000 characters: all are kept, nothing is counted (the room
    # a count would take is not kept free when no error is left out)
    "every error, exactly the bound": (12, 12, BOUND, "x", 12),
    # keys of non-ASCII letters, counted as the characters the log keeps (not as \\u escapes)
    "non-ASCII keys, exactly the bound": (30, 12, BOUND, "\u00e9", 12),
}


@pytest.mark.parametrize(("count", "shown", "length", "pad", "kept"), CASES.values(), ids=CASES.keys())
def test_an_invalid_cancel_webhooks_field_errors_fill_the_delivery_logs_bound_to_the_character(
    pipeline: Pipeline, metrics_fn: Any, count: int, shown: int, length: int, pad: str, kept: int
) -> None:
    # Given an appointment.cancel webhook whose data has `count` keys CancelData does not know,
    # sized so that its first `shown` errors (and the count of the rest) are `length` characters
    org_id, secret = pipeline.new_org()
    keys = keys_filling(count, shown, length, pad)
    data = {"appointment_id": str(uuid.uuid4()), **dict.fromkeys(keys, 1)}
    webhook_id = pipeline.send(org_id, secret, EVENT, data)
    # When the processor has handled it and its sender looks it up
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 1))
    found = lookup(metrics_fn, org_id, webhook_id)
    # Then it is dead-lettered as invalid at once
    assert (found["status"], found["outcome"], found["reason"]) == (
        "dead_letter",
        "invalid",
        "invalid_payload",
    )
    # And its error message names the event type and lists, as whole JSON, the first errors that
    # fit the log's 2,000 characters, then how many were left out: to the character
    text = found["error_message"]
    assert text == message(entries_of(keys, kept))
    assert (len(text) == length) if kept == shown else (len(text) < BOUND)
    assert text.startswith(PREFIX)
    stored = json.loads(text.removeprefix(PREFIX))
    if kept < count:
        assert stored[-1] == {"loc": ["data"], "msg": f"{count - kept} more error(s)", "type": "more_errors"}
    else:
        assert all(e["type"] == "extra_forbidden" for e in stored)
    assert [e["loc"][1] for e in stored if e["type"] == "extra_forbidden"] == keys[:kept]
    # And the attempt history shows the same message
    assert [(a["result"], a["error"]) for a in found["attempt_history"]] == [("dead_letter", text)]


def test_a_cancel_webhook_is_applied_with_its_reason_in_the_history_and_a_second_one_too(
    pipeline: Pipeline, metrics_fn: Any, booking_fn: Any
) -> None:
    # Given an org's appointment, booked by webhook
    org_id, secret = pipeline.new_org()
    pipeline.send(
        org_id,
        secret,
        "appointment.book",
        book_data("2030-09-02T10:00:00Z"),
    )
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 1))
    [appointment] = pipeline.appointments(org_id)
    target = {"appointment_id": str(appointment["id"])}
    # When a cancel webhook with a reason is processed, then another one for the same appointment
    first = pipeline.send(org_id, secret, EVENT, {**target, "reason": "the client moved away"})
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 2))
    second = pipeline.send(org_id, secret, EVENT, {**target, "reason": "asked twice"})
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 3))
    # Then the first is applied, cancelling the appointment
    one = lookup(metrics_fn, org_id, first)
    assert (one["status"], one["outcome"], one["reason"]) == ("completed", "applied", None)
    assert one["detail"] == {"status": "cancelled", "appointment_id": target["appointment_id"]}
    # And the appointment's history records the cancel by that webhook with the reason it gave
    history = ApiClient(booking_fn, claims(org_id)).get(f"/appointments/{appointment['id']}/history")
    assert history.status == 200, history.body
    cancels = [e for e in history.body["entries"] if e["action"] == "cancelled"]
    assert [(e["actor"], e["changes"]["reason"]) for e in cancels] == [
        (f"webhook:{first}", {"from": None, "to": "the client moved away"})
    ]
    # And the second is applied too (the appointment is cancelled, as it asked), not refused,
    # and changes nothing
    two = lookup(metrics_fn, org_id, second)
    assert (two["status"], two["outcome"], two["reason"]) == ("completed", "applied", None)
    assert two["detail"] == {"status": "already_cancelled", "appointment_id": target["appointment_id"]}
    [still] = pipeline.appointments(org_id)
    assert (still["status"], still["cancellation_reason"]) == ("cancelled", "the client moved away")
