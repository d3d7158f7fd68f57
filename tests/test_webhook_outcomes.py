"""A webhook's outcome, visible to its sender (issue 21, item 4b): the lookup by webhook id, the
attempts it records, and the outcome counts of the delivery stats. Real webhooks, signed and
queued (moto's SQS), processed by the processor on real Postgres, read through the metrics
function's handler."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import pytest

from slotguard.services.webhook_events import EventContext, Outcome, RetriableFailure
from slotguard_local.functions import load_function
from tests.conftest import ApiClient
from tests.webhook_support import Pipeline, book_data


def settled(p: Pipeline, org_id: str, n: int) -> Any:
    return lambda: sum(r["status"] in ("completed", "dead_letter") for r in p.rows(org_id)) >= n


def claims(org_id: str, role: str | None = None) -> dict[str, Any]:
    return {"sub": f"user-{uuid.uuid4().hex[:6]}", "org_id": org_id, **({"role": role} if role else {})}


@pytest.fixture
def metrics_fn(pipeline: Pipeline) -> Any:
    return load_function("metrics")


def lookup(api: ApiClient, webhook_id: str) -> Any:
    return api.get("/webhook-metrics/delivery", query={"webhook_id": webhook_id})


def test_each_outcome_is_answered_by_webhook_id_and_counted(pipeline: Pipeline, metrics_fn: Any) -> None:
    # Given an org's webhooks: a booking, one for the same slot, an unknown type, an invalid one
    org_id, secret = pipeline.new_org()
    applied = pipeline.send(org_id, secret, "appointment.book", book_data())
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 1))
    refused = pipeline.send(org_id, secret, "appointment.book", book_data())
    ignored = pipeline.send(org_id, secret, "invoice.paid", {"amount": 3})
    invalid = pipeline.send(org_id, secret, "appointment.cancel", {"reason": "no id"})
    # When the processor has handled them all
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 4))
    api = ApiClient(metrics_fn, claims(org_id))  # a member may look up the org's webhooks
    booked = pipeline.appointments(org_id)[0]
    # Then the booking is applied, naming its appointment, after one completed attempt
    one = lookup(api, applied)
    assert one.status == 200, one.body
    assert (one.body["status"], one.body["outcome"], one.body["reason"]) == ("completed", "applied", None)
    assert one.body["detail"]["appointment_id"] == str(booked["id"])
    assert [(a["attempt"], a["result"], a["error"]) for a in one.body["attempt_history"]] == [
        (1, "completed", None)
    ]
    assert one.body["attempt_history"][0]["at"] and "event_data" not in one.body
    # And the second is completed, but refused: slot_conflict, naming the appointment in the way
    two = lookup(api, refused).body
    assert (two["status"], two["outcome"], two["reason"]) == ("completed", "refused", "slot_conflict")
    assert two["detail"]["conflicts"] == [str(booked["id"])]
    # And the unknown type is ignored, the invalid one dead-lettered as invalid with its field errors
    three = lookup(api, ignored).body
    assert (three["status"], three["outcome"], three["reason"]) == (
        "completed",
        "ignored",
        "unknown_event_type",
    )
    assert [a["result"] for a in three["attempt_history"]] == ["completed"]  # completed by its claim
    four = lookup(api, invalid).body
    assert (four["status"], four["outcome"], four["reason"]) == ("dead_letter", "invalid", "invalid_payload")
    assert "appointment_id" in four["error_message"]
    assert [a["result"] for a in four["attempt_history"]] == ["dead_letter"]
    # And the delivery stats count each outcome beside a success rate of processed-without-error
    stats = api.get("/webhook-metrics/delivery-stats", query={"range": "1h"}).body
    assert stats["totals"]["outcomes"] == {"applied": 1, "refused": 1, "ignored": 1, "invalid": 1}
    assert stats["totals"]["success_rate"] == 0.75  # refused and ignored were processed without error
    by_type = {t["event_type"]: t["outcomes"] for t in stats["by_event_type"]}
    assert by_type["appointment.book"] == {"applied": 1, "refused": 1, "ignored": 0, "invalid": 0}
    assert by_type["invoice.paid"]["ignored"] == 1


def test_every_attempt_is_listed_with_its_time_and_error(pipeline: Pipeline, metrics_fn: Any) -> None:
    # Given a handler that fails twice, then succeeds
    calls: list[int] = []

    def flaky(ctx: EventContext, data: Any) -> Outcome:
        calls.append(1)
        if len(calls) <= 2:
            raise RetriableFailure(f"downstream timeout {len(calls)}")
        return Outcome("applied", {"after": len(calls)})

    pipeline.customize.append(lambda service: service.register("test.flaky", flaky))
    org_id, secret = pipeline.new_org()
    webhook_id = pipeline.send(org_id, secret, "test.flaky", {})
    # When it has been retried to success
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 1), timeout_s=60)
    # Then the lookup lists the three attempts, oldest first, each with its time and error
    found = lookup(ApiClient(metrics_fn, claims(org_id)), webhook_id).body
    history = found["attempt_history"]
    assert [(a["attempt"], a["result"]) for a in history] == [(1, "failed"), (2, "failed"), (3, "completed")]
    assert "downstream timeout 1" in history[0]["error"] and "downstream timeout 2" in history[1]["error"]
    assert history[2]["error"] is None
    assert history[0]["at"] < history[1]["at"] < history[2]["at"]
    assert (found["status"], found["attempts"], found["outcome"]) == ("completed", 3, "applied")
    assert found["error_message"] is None  # the last attempt's: it succeeded


def test_another_orgs_webhook_and_an_unknown_id_are_404(pipeline: Pipeline, metrics_fn: Any) -> None:
    # Given an org's processed webhook
    org_id, secret = pipeline.new_org()
    webhook_id = pipeline.send(org_id, secret, "invoice.paid", {})
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 1))
    # When another org's admin looks it up, or the org looks up an id nobody sent
    other_org, _ = pipeline.new_org()
    other = lookup(ApiClient(metrics_fn, claims(other_org, "admin")), webhook_id)
    unknown = lookup(ApiClient(metrics_fn, claims(org_id)), "msg_never_sent")
    # Then both are the same 404, naming the id: another org's webhooks do not exist for it
    for res, asked in ((other, webhook_id), (unknown, "msg_never_sent")):
        assert res.status == 404
        assert res.body["error"] == {
            "code": "not_found",
            "message": "no webhook with this id in this org",
            "details": {"webhook_id": asked},
        }


@pytest.mark.parametrize("webhook_id", ["", "x" * 256, "tab\there", "caf\u00e9"])
def test_a_webhook_id_the_receiver_never_accepts_is_422(metrics_fn: Any, webhook_id: str) -> None:
    res = ApiClient(metrics_fn, claims(str(uuid.uuid4()))).get(
        "/webhook-metrics/delivery", query={"webhook_id": webhook_id}
    )
    assert res.status == 422, res.body
    assert res.body["error"]["code"] == "validation_error"


def test_any_printable_webhook_id_is_found_through_the_query(pipeline: Pipeline, metrics_fn: Any) -> None:
    # Given a webhook whose id holds the characters a path could not carry plainly
    org_id, secret = pipeline.new_org()
    webhook_id = pipeline.send(org_id, secret, "invoice.paid", {}, webhook_id="a/b?c#d%2F e&f=g")
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 1))
    # Then it is found by its id
    found = lookup(ApiClient(metrics_fn, claims(org_id)), webhook_id)
    assert found.status == 200 and found.body["job_id"] == webhook_id
    assert quote(webhook_id, safe="") != webhook_id


def test_a_deliverys_attempts_go_with_it_when_retention_deletes_it(
    pipeline: Pipeline, admin_conn: Any
) -> None:
    # Given a processed webhook, its attempt recorded, completed long ago
    org_id, secret = pipeline.new_org()
    webhook_id = pipeline.send(org_id, secret, "invoice.paid", {})
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 1))
    count = "SELECT count(*) FROM slotguard.webhook_delivery_attempts WHERE org_id = %s"
    assert admin_conn.execute(count, (org_id,)).fetchone()[0] == 1
    admin_conn.execute(
        "UPDATE slotguard.webhook_delivery_log SET completed_at = now() - interval '30 days'"
        " WHERE org_id = %s AND job_id = %s",
        (org_id, webhook_id),
    )
    # When the retention cleanup purges completed deliveries older than 7 days
    admin_conn.execute("SELECT slotguard.purge_expired('completed', interval '7 days', 1000)")
    # Then the delivery and its attempts are gone together
    assert pipeline.rows(org_id) == []
    assert admin_conn.execute(count, (org_id,)).fetchone()[0] == 0


def test_a_reschedule_webhook_asking_for_a_backfill_is_refused_and_an_invalid_one_named(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given an org's appointment, booked by webhook
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "appointment.book", book_data("2030-07-01T10:00:00Z"))
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 1))
    [appointment] = pipeline.appointments(org_id)
    # When a reschedule webhook asks to move it into the past as a backfill (an admin's flag), and
    # another reschedule webhook has no new time
    backfill = pipeline.send(
        org_id,
        secret,
        "appointment.reschedule",
        {"appointment_id": str(appointment["id"]), "scheduled_at": "2020-01-01T10:00:00Z", "backfill": True},
    )
    invalid = pipeline.send(
        org_id, secret, "appointment.reschedule", {"appointment_id": str(appointment["id"])}
    )
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 3))
    api = ApiClient(metrics_fn, claims(org_id))
    # Then the backfill is refused (a webhook is no admin), saying so, and the appointment stays
    one = lookup(api, backfill).body
    assert (one["status"], one["outcome"], one["reason"]) == ("completed", "refused", "backfill_not_allowed")
    assert one["detail"] == {"status": "backfill_not_allowed"}
    [still] = pipeline.appointments(org_id)
    assert still["scheduled_at"] == appointment["scheduled_at"]
    # And the invalid one is dead-lettered as invalid, its error naming the event type and the field
    two = lookup(api, invalid).body
    assert (two["status"], two["outcome"], two["reason"]) == ("dead_letter", "invalid", "invalid_payload")
    assert two["error_message"].startswith("data is not valid for appointment.reschedule: ")
    assert '"loc": ["data", "scheduled_at"]' in two["error_message"]


def test_a_webhook_the_calendars_rules_refuse_names_the_rule_and_one_that_gave_up_says_so(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given an org whose default calendar opens 09:00-17:00 UTC, a booking webhook for 20:00, and a
    # webhook whose handler fails every attempt
    org_id, secret = pipeline.new_org()
    booking = load_function("booking")
    rules = {
        "time_zone": "UTC",
        "weekly_hours": {
            day: [{"start": "09:00", "end": "17:00"}]
            for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        },
    }
    assert (
        ApiClient(booking, claims(org_id, "admin"))
        .request("PUT", "/calendars/default/rules", json_body=rules)
        .status
        == 200
    )

    def broken(ctx: EventContext, data: Any) -> Outcome:
        raise RetriableFailure("downstream down")

    pipeline.customize.append(lambda service: service.register("test.broken", broken))
    outside = pipeline.send(org_id, secret, "appointment.book", book_data("2030-06-03T20:00:00Z"))
    gave_up = pipeline.send(org_id, secret, "test.broken", {})
    # When the processor has settled both
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 2), timeout_s=90)
    api = ApiClient(metrics_fn, claims(org_id))
    # Then the first is refused, its reason the rule's own code
    one = lookup(api, outside).body
    assert (one["status"], one["outcome"], one["reason"]) == ("completed", "refused", "outside_hours"), one
    # And the second is dead-lettered with no outcome, its reason saying it gave up
    two = lookup(api, gave_up).body
    assert (two["status"], two["outcome"], two["reason"]) == ("dead_letter", None, "gave_up"), two


def test_a_booking_webhook_overlapping_its_contacts_appointment_is_refused_naming_it(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given an org whose contacts never overlap themselves, and a contact's appointment
    org_id, secret = pipeline.new_org()
    booking = load_function("booking")
    admin = ApiClient(booking, claims(org_id, "admin"))
    assert admin.request("PUT", "/org/policy", json_body={"contact_no_overlap": True}).status == 200
    data = book_data("2030-06-04T10:00:00Z", 60)
    first = admin.post("/appointments", json_body={**data, "resource_id": str(uuid.uuid4())})
    assert first.status == 201, first.body
    # When a booking webhook books the contact at an overlapping time on another calendar
    webhook = pipeline.send(
        org_id,
        secret,
        "appointment.book",
        {**data, "scheduled_at": "2030-06-04T10:30:00Z", "resource_id": str(uuid.uuid4())},
    )
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 1))
    # Then it is refused as a contact conflict, naming the appointment in the way
    found = lookup(ApiClient(metrics_fn, claims(org_id)), webhook).body
    assert (found["status"], found["outcome"], found["reason"]) == (
        "completed",
        "refused",
        "contact_conflict",
    )
    assert found["detail"]["conflicts"] == [first.body["id"]]
