"""The processor on a real queue (moto server, real redrive policy) and real Postgres:
first-attempt success, backoff, dead-lettering, duplicates, partial batches, crashes."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from slotguard.config import RetryPolicy
from slotguard.services.webhook_events import EventContext, Outcome, RetriableFailure
from slotguard.services.webhook_processor import backoff_seconds
from slotguard_local.events import LambdaContext, sqs_record
from tests.conftest import log_records
from tests.webhook_support import MAX_ATTEMPTS, Pipeline, book_data


def settled(p: Pipeline, org_id: str, n: int) -> Any:
    return lambda: sum(r["status"] in ("completed", "dead_letter") for r in p.rows(org_id)) >= n


def test_processed_on_first_attempt_with_log_and_duration(pipeline: Pipeline) -> None:
    # Given a signed appointment.book webhook on the queue
    org_id, secret = pipeline.new_org()
    job_id = pipeline.send(org_id, secret, "appointment.book", book_data())
    # When the event source delivers it to the processor
    source = pipeline.event_source()
    assert source.poll_once() == 1
    # Then the appointment exists, made by the webhook, and the log row is completed at attempt 1
    [appt] = pipeline.appointments(org_id)
    assert appt["created_by"] == f"webhook:{job_id}"
    [row] = pipeline.rows(org_id)
    assert row["job_id"] == job_id
    assert row["event_type"] == "appointment.book"
    assert row["event_data"]["data"]["duration_minutes"] == 30
    assert (row["status"], row["attempts"], row["outcome"]) == ("completed", 1, "applied")
    assert row["max_attempts"] == MAX_ATTEMPTS
    assert row["processing_ms"] is not None
    assert row["processing_ms"] >= 0
    assert row["completed_at"] >= row["last_attempt_at"] >= row["created_at"]
    assert row["error_message"] is None
    # And the message is gone from the queue
    assert pipeline.queues.depth(pipeline.sqs) == 0
    assert source.stats.deleted == 1


def test_business_refusal_and_unknown_type_are_completed_not_retried(pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "appointment.book", book_data())
    taken = pipeline.send(org_id, secret, "appointment.book", book_data())  # same slot
    unknown = pipeline.send(org_id, secret, "invoice.paid", {"amount": 3})
    missing = pipeline.send(org_id, secret, "appointment.cancel", {"appointment_id": str(uuid.uuid4())})
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 4))
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert (rows[taken]["status"], rows[taken]["outcome"]) == ("completed", "rejected")
    assert rows[taken]["outcome_detail"]["status"] == "conflict"
    assert rows[taken]["outcome_detail"]["conflicts"] == [str(pipeline.appointments(org_id)[0]["id"])]
    assert (rows[unknown]["status"], rows[unknown]["outcome"]) == ("completed", "ignored")
    assert (rows[missing]["status"], rows[missing]["outcome"]) == ("completed", "rejected")
    assert all(r["attempts"] == 1 for r in rows.values())


def test_cancel_and_reschedule_events_call_the_booking_core(pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "appointment.book", book_data("2030-06-01T10:00:00Z"))
    source = pipeline.event_source()
    pipeline.drain(source, settled(pipeline, org_id, 1))
    appt_id = str(pipeline.appointments(org_id)[0]["id"])
    pipeline.send(
        org_id,
        secret,
        "appointment.reschedule",
        {"appointment_id": appt_id, "scheduled_at": "2030-06-02T10:00:00Z", "duration_minutes": 45},
    )
    pipeline.drain(source, settled(pipeline, org_id, 2))
    moved = [a for a in pipeline.appointments(org_id) if a["status"] == "scheduled"]
    assert len(moved) == 1
    assert moved[0]["duration_minutes"] == 45
    pipeline.send(
        org_id, secret, "appointment.cancel", {"appointment_id": str(moved[0]["id"]), "reason": "x"}
    )
    pipeline.drain(source, settled(pipeline, org_id, 3))
    assert all(a["status"] == "cancelled" for a in pipeline.appointments(org_id))
    assert [r["outcome"] for r in pipeline.rows(org_id)] == ["applied", "applied", "applied"]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(webhook_max_attempts=10, webhook_backoff_base_s=10, webhook_backoff_cap_s=300)
    lows = [backoff_seconds(a, policy, rand=lambda: 0.0) for a in range(1, 8)]
    highs = [backoff_seconds(a, policy, rand=lambda: 0.999999) for a in range(1, 8)]
    assert lows == [5, 10, 20, 40, 80, 150, 150]
    assert highs == [10, 20, 40, 80, 160, 300, 300]


def test_retry_with_backoff_then_success(pipeline: Pipeline) -> None:
    # Given a handler that fails twice, then succeeds
    calls: list[int] = []

    def flaky(ctx: EventContext, data: Any) -> Outcome:
        calls.append(1)
        if len(calls) <= 2:
            raise RetriableFailure("downstream timeout")
        return Outcome("applied", {"after": len(calls)})

    pipeline.customize.append(lambda service: service.register("test.flaky", flaky))
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "test.flaky", {})
    source = pipeline.event_source()
    container = [source._new_container()]
    # When the first attempt fails
    source.poll_once(container, wait_time_s=0)
    # Then the row is failed at attempt 1 with the error kept, and the message is hidden (backoff)
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "downstream timeout" in row["error_message"]
    assert source.stats.reported_failures == 1
    assert source.poll_once(container, wait_time_s=0) == 0  # invisible during its backoff
    # When it comes back, fails again, then succeeds
    pipeline.drain(source, settled(pipeline, org_id, 1))
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["outcome"]) == ("completed", 3, "applied")
    assert row["error_message"] is None
    assert len(calls) == 3
    assert pipeline.queues.depth(pipeline.sqs) == 0


def test_dead_letter_after_max_attempts(pipeline: Pipeline) -> None:
    def always_failing(ctx: EventContext, data: Any) -> Outcome:
        raise RetriableFailure("still broken")

    pipeline.customize.append(lambda service: service.register("test.broken", always_failing))
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "test.broken", {})
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 1))
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["outcome"]) == ("dead_letter", MAX_ATTEMPTS, "gave_up")
    assert "still broken" in row["error_message"]
    # The processor dead-lettered it itself: the message is deleted, not left for the redrive
    assert pipeline.queues.depth(pipeline.sqs) == 0
    assert pipeline.queues.depth(pipeline.sqs, pipeline.queues.dlq_url) == 0


def test_a_failed_attempt_records_how_long_its_handler_ran_and_logs_it_for_the_operator(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a handler that works for 60 ms and then fails, saying why at length
    why = "downstream timeout: " + "x" * 600

    def slow_failure(ctx: EventContext, data: Any) -> Outcome:
        time.sleep(0.06)
        raise RetriableFailure(why)

    pipeline.customize.append(lambda service: service.register("test.slow_failure", slow_failure))
    org_id, secret = pipeline.new_org()
    job_id = pipeline.send(org_id, secret, "test.slow_failure", {})
    source = pipeline.event_source()
    # When its first attempt runs
    source.poll_once([source._new_container()], wait_time_s=0)
    # Then the failed attempt is recorded with the time it took, in milliseconds, and the reason
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert 60 <= row["processing_ms"] < 2000, row["processing_ms"]
    assert row["error_message"] == f"RetriableFailure: {why}"
    # And the processor's log says which delivery failed, at which attempt, whether it gave up, and
    # why (the reason's first 500 characters)
    [warning] = log_records(caplog, "webhook attempt failed")
    assert warning.levelname == "WARNING"
    assert (warning.job_id, warning.attempt, warning.dead, warning.error) == (
        job_id,
        1,
        False,
        f"RetriableFailure: {why}"[:500],
    )


def test_a_completed_attempt_records_how_long_its_handler_ran(pipeline: Pipeline) -> None:
    # Given a handler with an effect that works for 60 ms
    def slow(ctx: EventContext, data: Any) -> Outcome:
        time.sleep(0.06)
        return Outcome("applied", {})

    pipeline.customize.append(lambda service: service.register("test.slow", slow))
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "test.slow", {})
    # When it is processed
    source = pipeline.event_source()
    source.poll_once([source._new_container()], wait_time_s=0)
    # Then the delivery is completed with the time it took, in milliseconds
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["outcome"]) == ("completed", "applied")
    assert 60 <= row["processing_ms"] < 2000, row["processing_ms"]


def test_invalid_payload_is_dead_lettered_at_once(pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "appointment.book", {"contact_id": "nope", "duration_minutes": 0})
    pipeline.event_source().poll_once()
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["outcome"]) == ("dead_letter", 1, "invalid_payload")
    assert "contact_id" in row["error_message"]
    assert pipeline.queues.depth(pipeline.sqs) == 0


def test_a_queued_body_that_is_not_a_json_object_is_kept_and_dead_lettered_at_once(
    pipeline: Pipeline,
) -> None:
    # Given two messages put on the queue by something other than the receiver (which sends only
    # JSON objects), with a webhook's attributes: one body not JSON at all, one a JSON array
    org_id, _ = pipeline.new_org()
    long_text = "not json " + "x" * 20_000
    for webhook_id, body in (("msg_text", long_text), ("msg_array", "[1, 2]")):
        pipeline.sqs.send_message(
            QueueUrl=pipeline.queues.main_url,
            MessageBody=body,
            MessageAttributes={
                "org_id": {"DataType": "String", "StringValue": org_id},
                "webhook_id": {"DataType": "String", "StringValue": webhook_id},
                "event_type": {"DataType": "String", "StringValue": "appointment.book"},
            },
        )
    # When the processor takes them
    pipeline.event_source(batch_size=10).poll_once()
    # Then each is dead-lettered at its first attempt, saying why, and what came is kept (the
    # text's first 10,000 characters); nothing is left on the queue to be retried in vain
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    text, array = rows["msg_text"], rows["msg_array"]
    assert (text["status"], text["attempts"], text["outcome"]) == ("dead_letter", 1, "invalid_payload")
    assert text["error_message"] == "the body is not JSON"
    assert text["event_data"] == {"unparseable_body": long_text[:10_000]}
    assert (array["status"], array["attempts"], array["outcome"]) == ("dead_letter", 1, "invalid_payload")
    assert array["error_message"] == "the payload is not an object"
    assert array["event_data"] == {"payload": [1, 2]}
    assert pipeline.queues.depth(pipeline.sqs) == 0
    assert pipeline.appointments(org_id) == []


def test_an_invalid_payload_is_stored_as_the_field_errors_the_api_answers(
    pipeline: Pipeline, booking_fn: Any
) -> None:
    from tests.conftest import ApiClient

    # Given a booking body the API refuses with field errors
    org_id, secret = pipeline.new_org()
    data = {"contact_id": "nope", "scheduled_at": "2030-06-01T10:00:00", "duration_minutes": 0}
    api = ApiClient(booking_fn, {"sub": "u", "org_id": org_id}).post("/appointments", json_body=data)
    assert api.status == 422
    api_errors = api.body["error"]["details"]["errors"]
    # When the same data arrives as an appointment.book webhook
    pipeline.send(org_id, secret, "appointment.book", data)
    pipeline.event_source().poll_once()
    # Then it is dead-lettered with the same readable field errors (JSON, not a Python repr),
    # located in the webhook's `data` where the API says `body`
    [row] = pipeline.rows(org_id)
    assert row["outcome"] == "invalid_payload"
    prefix = "data is not valid for appointment.book: "
    assert row["error_message"].startswith(prefix), row["error_message"]
    stored = json.loads(row["error_message"].removeprefix(prefix))
    assert stored == [{**e, "loc": ["data", *e["loc"][1:]]} for e in api_errors]
    assert {tuple(e["loc"]) for e in stored} == {
        ("data", "contact_id"),
        ("data", "scheduled_at"),
        ("data", "duration_minutes"),
    }


def test_many_field_errors_are_kept_as_whole_json_within_the_log_limit() -> None:
    from slotguard.services.webhook_events import MAX_ERROR_CHARS, invalid_data_message

    # Given more field errors than the delivery log's error_message can hold
    errors = [{"loc": ["data", f"field_{i}"], "msg": "Field required", "type": "missing"} for i in range(500)]
    # When they are written as the stored message
    text = invalid_data_message("appointment.book", errors)
    # Then it fits, stays valid JSON, and says how many were left out
    assert len(text) <= MAX_ERROR_CHARS
    stored = json.loads(text.removeprefix("data is not valid for appointment.book: "))
    assert stored[:-1] == errors[: len(stored) - 1]
    assert stored[-1]["type"] == "more_errors"
    assert stored[-1]["msg"] == f"{500 - (len(stored) - 1)} more error(s)"


def test_an_invalid_payload_of_30000_unknown_keys_is_summed_up_in_one_pass() -> None:
    import time

    from pydantic import ValidationError

    from slotguard.errors import field_errors
    from slotguard.models import BookRequest
    from slotguard.services.webhook_events import MAX_ERROR_CHARS, invalid_data_message

    # Given a booking's data with 30,000 unknown keys (about 250 KB: a webhook body within its
    # bound), each of them its own field error
    data = {f"k{i}": 0 for i in range(30_000)}
    try:
        BookRequest.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc.errors(), ("data",))
    assert len(errors) > 30_000
    # When the stored message is written (it was quadratic: minutes, past the processor's timeout)
    started = time.perf_counter()
    text = invalid_data_message("appointment.book", errors)
    took = time.perf_counter() - started
    # Then it is written at once, within the log's bound, whole JSON counting what was left out
    assert took < 1.0, took
    assert len(text) <= MAX_ERROR_CHARS
    stored = json.loads(text.removeprefix("data is not valid for appointment.book: "))
    assert stored[-1]["type"] == "more_errors"
    assert stored[-1]["msg"] == f"{len(errors) - (len(stored) - 1)} more error(s)"


def test_a_second_copy_in_the_same_batch_keeps_the_backoff_the_first_recorded(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a long backoff and a handler that fails retriably
    monkeypatch.setenv("WEBHOOK_BACKOFF_BASE_S", "30")
    monkeypatch.setenv("WEBHOOK_BACKOFF_CAP_S", "60")
    runs: list[str] = []

    def failing(ctx: EventContext, data: Any) -> Outcome:
        runs.append(ctx.job_id)
        raise RetriableFailure("downstream timeout")

    pipeline.customize.append(lambda service: service.register("test.flaky", failing))
    # And the same webhook posted twice: two SQS messages of one delivery
    org_id, secret = pipeline.new_org()
    job = pipeline.send(org_id, secret, "test.flaky", {"x": 1}, webhook_id="msg_twice")
    pipeline.send(org_id, secret, "test.flaky", {"x": 1}, webhook_id=job)
    source = pipeline.event_source(batch_size=10, batching_window_s=0.5)
    container = [source._new_container()]
    # When both copies arrive in one batch
    assert source.poll_once(container, wait_time_s=0) == 2
    # Then the handler ran once: the first copy's failure is one attempt, with its backoff
    assert runs == [job]
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    # And the second copy was handed back for the rest of that backoff too, not run at once
    assert source.stats.reported_failures == 2
    assert source.poll_once(container, wait_time_s=0) == 0
    time.sleep(1.5)
    assert source.poll_once(container, wait_time_s=0) == 0
    assert runs == [job]


def test_the_processor_hands_back_what_its_remaining_time_cannot_cover_under_a_held_lock(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a lock wait of 1 s and 6.5 s kept for a record's statements (so a record is started
    # only with 7.5 s left: the slack keeps the hand-back's own calls inside the invocation on a
    # loaded machine), and five bookings of one calendar hour queued
    monkeypatch.setenv("BOOKING_LOCK_WAIT_MS", "1000")
    monkeypatch.setenv("WEBHOOK_STATEMENT_RESERVE_MS", "6500")
    org_id, secret = pipeline.new_org()
    jobs = [
        pipeline.send(org_id, secret, "appointment.book", book_data(f"2030-09-02T10:{10 * i:02d}:00Z", 10))
        for i in range(5)
    ]
    # And another transaction holding that hour's calendar lock
    holder = psycopg.connect(pipeline.admin_url)
    try:
        holder.execute(
            "SELECT pg_advisory_xact_lock(k) FROM slotguard.calendar_lock_keys(%s, NULL, %s, %s) k",
            (org_id, "2030-09-02T10:00:00Z", "2030-09-02T11:00:00Z"),
        )
        # When one invocation with 8 s to live takes the batch
        source = pipeline.event_source(batch_size=5, batching_window_s=1, function_timeout_s=8)
        container = [source._new_container()]
        assert source.poll_once(container, wait_time_s=0) == 5
        # Then it returned in time: the first record waited and failed busy (one attempt, backing off)
        assert (source.stats.timeouts, source.stats.failed_invocations) == (0, 0)
        assert (source.stats.reported_failures, source.stats.deleted) == (5, 0)
        rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
        assert (rows[jobs[0]]["status"], rows[jobs[0]]["attempts"]) == ("failed", 1)
        assert "busy" in rows[jobs[0]]["error_message"]
        # And the four it had no time for were handed back untouched: no attempt spent, no claim
        # left to go stale, visible again at once
        for job in jobs[1:]:
            assert (rows[job]["status"], rows[job]["attempts"], rows[job]["claim_token"]) == (
                "pending",
                0,
                None,
            )
        again = pipeline.sqs.receive_message(
            QueueUrl=pipeline.queues.main_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )["Messages"]
        assert sorted(m["MessageAttributes"]["webhook_id"]["StringValue"] for m in again) == sorted(jobs[1:])
        for m in again:
            pipeline.sqs.change_message_visibility(
                QueueUrl=pipeline.queues.main_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
    finally:
        holder.rollback()
        holder.close()
    # When the lock is free, Then all five are booked, the four handed back at their first attempt
    pipeline.drain(pipeline.event_source(), settled(pipeline, org_id, 5))
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert {j: (r["status"], r["attempts"]) for j, r in rows.items()} == {
        jobs[0]: ("completed", 2),
        **{job: ("completed", 1) for job in jobs[1:]},
    }
    assert len(pipeline.appointments(org_id)) == 5


def test_a_booking_webhook_waits_for_its_calendar_lock_as_long_as_the_processor_is_set_to(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a processor set to wait 300 ms for a calendar's lock (the default is 3 s)
    monkeypatch.setenv("BOOKING_LOCK_WAIT_MS", "300")
    org_id, secret = pipeline.new_org()
    job = pipeline.send(org_id, secret, "appointment.book", book_data("2030-09-03T10:00:00Z"))
    # And another transaction holding that calendar's lock, which it lets go one second after the
    # booking starts waiting for it
    source = pipeline.event_source(function_timeout_s=30)
    taking = threading.Thread(
        target=source.poll_once, args=([source._new_container()],), kwargs={"wait_time_s": 0}
    )
    holder = psycopg.connect(pipeline.admin_url)
    try:
        holder.execute(
            "SELECT pg_advisory_xact_lock(k) FROM slotguard.calendar_lock_keys(%s, NULL, %s, %s) k",
            (org_id, "2030-09-03T10:00:00Z", "2030-09-03T10:30:00Z"),
        )
        taking.start()
        with psycopg.connect(pipeline.admin_url, autocommit=True) as watcher:
            while (
                taking.is_alive()
                and not watcher.execute(
                    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                ).fetchone()
            ):
                time.sleep(0.01)
        time.sleep(1)
    finally:
        holder.rollback()
        holder.close()
        if taking.is_alive():
            taking.join(30)
    # When the webhook has been taken, Then its booking gave up after its own 300 ms, busy, before
    # the lock was let go: one attempt spent, backing off, no appointment
    assert not taking.is_alive()
    [row] = pipeline.rows(org_id)
    assert (row["job_id"], row["status"], row["attempts"]) == (job, "failed", 1)
    assert "busy" in row["error_message"]
    assert pipeline.appointments(org_id) == []


def test_queue_counts(pipeline: Pipeline) -> None:
    from slotguard.aws.sqs import WebhookQueue

    org_id, secret = pipeline.new_org()
    for _ in range(3):
        pipeline.send(org_id, secret, "invoice.paid", {})
    queue = WebhookQueue(pipeline.queues.main_url, pipeline.sqs)
    assert queue.depth().visible == 3
    pipeline.sqs.receive_message(QueueUrl=pipeline.queues.main_url, MaxNumberOfMessages=2)
    depth = queue.depth()
    assert (depth.visible, depth.in_flight) == (1, 2)


def test_partial_batch_one_poison_record_of_ten(pipeline: Pipeline) -> None:
    def poison(ctx: EventContext, data: Any) -> Outcome:
        raise RuntimeError("handler bug")

    pipeline.customize.append(lambda service: service.register("test.poison", poison))
    org_id, secret = pipeline.new_org()
    for i in range(9):
        pipeline.send(org_id, secret, "appointment.book", book_data(f"2030-07-01T{10 + i}:00:00Z"))
    bad = pipeline.send(org_id, secret, "test.poison", {})
    source = pipeline.event_source(batch_size=10, batching_window_s=1)
    # When one batch of ten is processed
    assert source.poll_once() == 10
    # Then nine are completed and deleted, one is reported as a batch item failure
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert Counter(r["status"] for r in rows.values()) == {"completed": 9, "failed": 1}
    assert rows[bad]["status"] == "failed"
    assert (source.stats.invocations, source.stats.deleted, source.stats.reported_failures) == (1, 9, 1)
    assert len(pipeline.appointments(org_id)) == 9


def test_a_message_without_a_webhooks_identity_fails_alone_and_the_batch_is_applied(
    pipeline: Pipeline,
) -> None:
    # Given a batch of two webhooks and, between them, a message without the attributes the
    # receiver sets (org, webhook id, event type): something else wrote to the queue
    org_id, secret = pipeline.new_org()
    first = pipeline.send(org_id, secret, "appointment.book", book_data("2030-07-01T10:00:00Z"))
    pipeline.sqs.send_message(QueueUrl=pipeline.queues.main_url, MessageBody='{"type": "appointment.book"}')
    second = pipeline.send(org_id, secret, "appointment.book", book_data("2030-07-01T11:00:00Z"))
    source = pipeline.event_source(batch_size=10, batching_window_s=1)
    # When one batch of the three is processed
    assert source.poll_once() == 3
    # Then both webhooks are applied and deleted; the message without identity is reported as
    # the batch's one failure (SQS redelivers it until its redrive to the dead-letter queue),
    # and it wrote nothing
    assert (source.stats.deleted, source.stats.reported_failures) == (2, 1)
    assert {r["job_id"]: r["status"] for r in pipeline.rows(org_id)} == {
        first: "completed",
        second: "completed",
    }
    assert len(pipeline.appointments(org_id)) == 2


def test_a_message_without_identity_first_in_a_batch_leaves_the_rest_to_one_claim(
    pipeline: Pipeline,
) -> None:
    # Given a batch whose first message lacks a webhook's identity, followed by three webhooks
    counters = count_statements(pipeline)
    container = pipeline.processor_container()
    org_id, _ = pipeline.new_org()
    stray = _record(org_id, "stray", "invoice.paid", {})
    stray["messageAttributes"] = {}
    records = [stray, *[_record(org_id, f"ok_{i}", "invoice.paid", {"n": i}) for i in range(3)]]
    # When the processor takes it
    answer = container({"Records": records}, LambdaContext())
    # Then the stray message alone fails, and the three webhooks are claimed and completed in the
    # batch's one statement
    assert answer == {"batchItemFailures": [{"itemIdentifier": stray["messageId"]}]}
    assert counters[0].statements == ["claim_webhook_deliveries"]
    assert {r["job_id"]: r["status"] for r in pipeline.rows(org_id)} == {
        f"ok_{i}": "completed" for i in range(3)
    }


def test_duplicate_delivery_in_sequence_applies_once(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a booking webhook on the queue
    org_id, secret = pipeline.new_org()
    job_id = pipeline.send(org_id, secret, "appointment.book", book_data())
    [message] = pipeline.sqs.receive_message(
        QueueUrl=pipeline.queues.main_url, AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    event = {"Records": [sqs_record(message, "arn:aws:sqs:us-east-1:000000000000:q")]}
    container = pipeline.processor_container()
    # When SQS delivers the same message twice (at-least-once)
    first = container(event, LambdaContext())
    second = container(event, LambdaContext())
    # Then both are acknowledged and the effect happened once
    assert first == second == {"batchItemFailures": []}
    assert len(pipeline.appointments(org_id)) == 1
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    # And the log notes the copy, as a duplicate of a completed delivery
    [note] = log_records(caplog, "duplicate delivery acknowledged")
    assert (note.levelname, note.job_id, note.status) == ("INFO", job_id, "completed")


def test_a_webhook_id_reused_with_other_content_is_dropped_and_the_first_kept(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    def flaky(ctx: EventContext, data: Any) -> Outcome:
        raise RetriableFailure("dependency down")

    pipeline.customize.append(lambda service: service.register("test.flaky", flaky))
    # Given a webhook whose first attempt failed (it will be retried), then another one under the
    # same id with other content (a sender reusing its ids): the receiver queues both
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "test.flaky", {"n": 1}, webhook_id="msg_reused")
    pipeline.event_source().poll_once()
    pipeline.sqs.purge_queue(QueueUrl=pipeline.queues.main_url)  # (its retry is not this test's)
    pipeline.send(org_id, secret, "test.flaky", {"n": 2}, webhook_id="msg_reused")
    # When the processor takes the second
    source = pipeline.event_source()
    source.poll_once()
    # Then it is acknowledged (deleted, never retried) and neither applied nor attempted: the
    # delivery is still the first one's, and the drop is logged as such, with the id
    assert (source.stats.deleted, source.stats.reported_failures) == (1, 0)
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["event_data"]["data"]) == ("failed", 1, {"n": 1})
    [dropped] = [
        r
        for r in caplog.records
        if r.getMessage() == "a message reusing a webhook id with other content was dropped"
    ]
    assert (dropped.levelname, dropped.job_id) == ("WARNING", "msg_reused")


def test_duplicate_webhook_posted_twice_is_one_row(pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    data = book_data()
    pipeline.send(org_id, secret, "appointment.book", data, webhook_id="msg_same")
    pipeline.send(org_id, secret, "appointment.book", data, webhook_id="msg_same")
    source = pipeline.event_source()
    pipeline.drain(source, lambda: pipeline.queues.depth(pipeline.sqs) == 0)
    assert len(pipeline.rows(org_id)) == 1
    assert len(pipeline.appointments(org_id)) == 1


def test_duplicate_delivery_to_two_processors_at_once_applies_once(pipeline: Pipeline) -> None:
    # Given a handler slow enough that two processors overlap on one message
    gate = threading.Barrier(2, timeout=5)
    real_book: list[Any] = []
    runs: list[str] = []

    def slow_book(ctx: EventContext, data: Any) -> Outcome:
        runs.append(ctx.job_id)
        time.sleep(0.3)
        return real_book[0](ctx, data)

    def customize(service: Any) -> None:
        real_book.append(service._handlers["appointment.book"])
        service.register("appointment.book", slow_book)

    pipeline.customize.append(customize)
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "appointment.book", book_data())
    [message] = pipeline.sqs.receive_message(
        QueueUrl=pipeline.queues.main_url, AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    event = {"Records": [sqs_record(message, "arn:aws:sqs:us-east-1:000000000000:q")]}
    containers = [pipeline.processor_container(), pipeline.processor_container()]
    answers: list[Any] = [None, None]

    def run(i: int) -> None:
        gate.wait()
        answers[i] = containers[i](event, LambdaContext())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then one applied it; the other saw it in progress and reported it (never deleted it early),
    # without running the handler itself (a fresh claim is not taken over)
    assert sorted(len(a["batchItemFailures"]) for a in answers) == [0, 1]
    assert len(pipeline.appointments(org_id)) == 1
    assert len(runs) == 1
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    # And when the reported copy comes back it is acknowledged as a duplicate
    assert containers[0](event, LambdaContext()) == {"batchItemFailures": []}
    assert len(pipeline.appointments(org_id)) == 1


class SimulatedCrash(BaseException):
    """Escapes the batch processor's per-record handling, like a runtime crash."""


def test_crash_outside_record_handling_ends_in_dlq_and_reconciler_dead_letters(pipeline: Pipeline) -> None:
    def crash(ctx: EventContext, data: Any) -> Outcome:
        raise SimulatedCrash

    pipeline.customize.append(lambda service: service.register("test.crash", crash))
    org_id, secret = pipeline.new_org()
    job_id = pipeline.send(org_id, secret, "test.crash", {"k": 1})
    ok_id = pipeline.send(org_id, secret, "appointment.book", book_data())
    source = pipeline.event_source(batch_size=10, batching_window_s=0.5)
    # When every invocation that holds the crashing record fails as a whole
    pipeline.drain(source, lambda: pipeline.queues.depth(pipeline.sqs) == 0, timeout_s=40)
    # Then SQS's redrive moved it to the DLQ after maxReceiveCount receives
    # (a later delivery may instead find its fresh claim and report it in progress: either way
    # it is never acknowledged, so its receive count climbs to maxReceiveCount)
    assert source.stats.failed_invocations >= 1
    assert pipeline.queues.depth(pipeline.sqs, pipeline.queues.dlq_url) >= 1
    # When the reconciler gets the DLQ's messages as the SQS event Lambda would hand it
    dead_messages: list[dict[str, Any]] = []
    while got := pipeline.sqs.receive_message(
        QueueUrl=pipeline.queues.dlq_url,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        VisibilityTimeout=60,
    ).get("Messages", []):
        dead_messages += got
    assert job_id in {m["MessageAttributes"]["webhook_id"]["StringValue"] for m in dead_messages}
    dlq_arn = pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.queues.dlq_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    event = {"Records": [sqs_record(m, dlq_arn) for m in dead_messages]}
    reconciler = pipeline.dlq_source()._new_container()
    assert reconciler(event, LambdaContext()) == {"batchItemFailures": []}
    # Then it turns the crashing one into a dead_letter row; nothing stays processing
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert rows[job_id]["status"] == "dead_letter"
    assert rows[job_id]["outcome"] == "redrive_policy"
    assert rows[job_id]["error_message"].startswith(
        "moved to the dead-letter queue by the redrive policy (message "
    )
    assert rows[job_id]["event_data"]["data"] == {"k": 1}
    assert rows[ok_id]["status"] in ("completed", "dead_letter")
    assert all(r["status"] != "processing" for r in rows.values())
    # When the same messages are reconciled again (SQS delivers at least once), in a fresh container
    again = pipeline.dlq_source()._new_container()
    assert again(event, LambdaContext()) == {"batchItemFailures": []}
    # Then nothing changes: the same rows, each column as it was (status, attempts, error, outcome),
    # and no second row
    after = pipeline.rows(org_id)
    assert len(after) == len(rows) == 2
    assert {r["job_id"]: r for r in after} == rows
    assert len(pipeline.appointments(org_id)) <= 1


def test_handler_hanging_past_the_timeout_ends_dead_lettered(pipeline: Pipeline) -> None:
    release = threading.Event()

    def hang(ctx: EventContext, data: Any) -> Outcome:
        release.wait(30)
        return Outcome("applied")

    pipeline.customize.append(lambda service: service.register("test.hang", hang))
    org_id, secret = pipeline.new_org()
    job_id = pipeline.send(org_id, secret, "test.hang", {})
    source = pipeline.event_source(function_timeout_s=1)
    try:
        # When every receive times out (or finds the hung claim in progress) until SQS's redrive
        # moves the message to the DLQ
        pipeline.drain(source, lambda: pipeline.queues.depth(pipeline.sqs) == 0, timeout_s=40)
        # Then the processor never acknowledged it (nothing was deleted from the queue)
        assert source.stats.timeouts >= 1
        assert source.stats.deleted == 0, source.stats
        # And the reconciler makes it a dead_letter row
        dlq = pipeline.dlq_source()

        def dead_lettered() -> bool:
            empty = pipeline.queues.depth(pipeline.sqs, pipeline.queues.dlq_url) == 0
            return empty and [r["status"] for r in pipeline.rows(org_id)] == ["dead_letter"]

        def state() -> object:
            return {
                "rows": [
                    {k: r[k] for k in ("status", "attempts", "claim_token", "error_message")}
                    for r in pipeline.rows(org_id)
                ],
                "dlq_depth": pipeline.queues.depth(pipeline.sqs, pipeline.queues.dlq_url),
                "sessions": pipeline.activity(),
            }

        # (a generous bound: the hung invocations run on beside the reconciler until released)
        pipeline.drain(dlq, dead_lettered, timeout_s=60, describe=state)
        [row] = pipeline.rows(org_id)
        assert (row["job_id"], row["status"]) == (job_id, "dead_letter"), (row, source.stats, dlq.stats)
    finally:
        release.set()
    # A hung invocation that finally finishes cannot complete a dead-lettered delivery
    time.sleep(0.5)
    [row] = pipeline.rows(org_id)
    assert row["status"] == "dead_letter"


def test_reconciler_is_idempotent_and_keeps_completed_rows(pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    done = pipeline.send(org_id, secret, "appointment.book", book_data())
    pipeline.event_source().poll_once()
    reconciler = pipeline.dlq_source()._new_container()
    never_seen = {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": '{"type": "x.y", "data": {"a": 1}}',
        "Attributes": {"ApproximateReceiveCount": "3"},
        "MessageAttributes": {
            "org_id": {"DataType": "String", "StringValue": org_id},
            "webhook_id": {"DataType": "String", "StringValue": "lost-1"},
            "event_type": {"DataType": "String", "StringValue": "x.y"},
        },
    }
    completed_copy = {
        **never_seen,
        "MessageId": "m-2",
        "MessageAttributes": {
            **never_seen["MessageAttributes"],
            "webhook_id": {"DataType": "String", "StringValue": done},
        },
    }
    event = {"Records": [sqs_record(never_seen, "arn:q-dlq"), sqs_record(completed_copy, "arn:q-dlq")]}
    for _ in range(2):
        assert reconciler(event, LambdaContext()) == {"batchItemFailures": []}
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert len(rows) == 2
    assert (rows["lost-1"]["status"], rows["lost-1"]["attempts"]) == ("dead_letter", 3)
    assert rows["lost-1"]["event_data"] == {"type": "x.y", "data": {"a": 1}}
    assert rows[done]["status"] == "completed"


@pytest.mark.parametrize("concurrency", [4])
def test_processing_with_the_configured_concurrency(pipeline: Pipeline, concurrency: int) -> None:
    # Given 120 webhooks and an event source allowed `concurrency` invocations at once
    org_id, secret = pipeline.new_org()
    for i in range(120):
        pipeline.send(
            org_id, secret, "appointment.book", book_data(f"2030-08-{1 + i // 24:02d}T{i % 24:02d}:00:00Z")
        )
    source = pipeline.event_source(batch_size=5, max_concurrency=concurrency)
    # When it runs continuously
    source.start()
    try:
        deadline = time.monotonic() + 60
        while not settled(pipeline, org_id, 120)() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        source.stop()
    # Then every webhook is completed once, by several processors working at once, never more than allowed
    assert Counter(r["status"] for r in pipeline.rows(org_id)) == {"completed": 120}
    assert len(pipeline.appointments(org_id)) == 120
    assert 1 < source.stats.max_in_flight <= concurrency


def _record(org_id: str, job_id: str, event_type: str, data: Any) -> dict[str, Any]:
    body = json.dumps({"type": event_type, "timestamp": "2030-01-01T00:00:00Z", "data": data})
    message = {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": uuid.uuid4().hex,
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MessageAttributes": {
            k: {"DataType": "String", "StringValue": v}
            for k, v in {"org_id": org_id, "webhook_id": job_id, "event_type": event_type}.items()
        },
    }
    return sqs_record(message, "arn:aws:sqs:us-east-1:000000000000:q")


def test_a_batch_is_claimed_once_per_delivery_and_each_commits_its_own_effect(pipeline: Pipeline) -> None:
    # Given one SQS batch: four bookings, three unknown types, and a second copy of the first booking
    org_id, _ = pipeline.new_org()
    records = [
        _record(org_id, f"book_{i}", "appointment.book", book_data(f"2030-07-01T1{i}:00:00Z"))
        for i in range(4)
    ] + [_record(org_id, f"other_{i}", "invoice.paid", {"n": i}) for i in range(3)]
    records.append({**records[0], "receiptHandle": uuid.uuid4().hex, "messageId": str(uuid.uuid4())})
    # When the processor takes the batch
    answer = pipeline.processor_container()({"Records": records}, LambdaContext())
    # Then every record is acknowledged, each delivery applied once at its first attempt
    assert answer == {"batchItemFailures": []}
    assert len(pipeline.appointments(org_id)) == 4
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert len(rows) == 7
    assert {(r["status"], r["attempts"]) for r in rows.values()} == {("completed", 1)}
    assert Counter(r["outcome"] for r in rows.values()) == {"applied": 4, "ignored": 3}


def test_a_batch_the_database_refuses_to_claim_at_once_is_claimed_record_by_record(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a batch in which one payload PostgreSQL cannot store (a NUL character in a string)
    org_id, _ = pipeline.new_org()
    good = [_record(org_id, f"ok_{i}", "invoice.paid", {"n": i}) for i in range(3)]
    poison = _record(org_id, "nul", "invoice.paid", {"text": "a\u0000b"})
    # When the processor takes it
    answer = pipeline.processor_container()({"Records": [good[0], poison, *good[1:]]}, LambdaContext())
    # Then only the unstorable record fails; the others are claimed one by one and completed
    assert answer == {"batchItemFailures": [{"itemIdentifier": poison["messageId"]}]}
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert set(rows) == {"ok_0", "ok_1", "ok_2"}
    assert {(r["status"], r["attempts"]) for r in rows.values()} == {("completed", 1)}
    # And the log says the batch claim failed, and why
    [warning] = log_records(caplog, "batch claim failed; claiming record by record")
    assert (warning.levelname, warning.error) == ("WARNING", "UntranslatableCharacter")


def test_batch_claim_answers_as_the_single_claim_does(pipeline: Pipeline, app_conn: Any) -> None:
    # Given deliveries that are new, completed, and being processed by another worker
    org_id, _ = pipeline.new_org()
    pipeline.processor_container()(
        {"Records": [_record(org_id, "done", "invoice.paid", {})]}, LambdaContext()
    )
    app_conn.execute(
        "SELECT slotguard.claim_webhook_delivery(%s, 'busy', 'invoice.paid', '{}', 5, 180)", (org_id,)
    )
    items = [
        {"org_id": org_id, "job_id": job, "event_type": "invoice.paid", "event_data": {}}
        for job in ("new", "done", "busy")
    ]
    # When they are claimed in one statement
    [claims] = app_conn.execute(
        "SELECT slotguard.claim_webhook_deliveries(%s, 5, 180)", (Jsonb(items),)
    ).fetchone()
    # Then each answer is the single claim's answer for that delivery, in order
    assert [c["action"] for c in claims] == ["process", "skip", "in_progress"]
    assert claims[0]["attempt"] == 1
    assert claims[1]["status"] == "completed"


class StatementCounter:
    """Counts the statements a processor container sends (every SQL function call goes through
    Database.scalar) and the transactions it opens."""

    def __init__(self, service: Any) -> None:
        self.statements: list[str] = []
        self.transactions = 0
        db = service._db
        scalar, transaction = db.scalar, db.transaction

        def counted_scalar(query: str, params: Any, **kw: Any) -> Any:
            self.statements.append(query.split("(")[0].removeprefix("SELECT slotguard."))
            return scalar(query, params, **kw)

        def counted_transaction() -> Any:
            self.transactions += 1
            return transaction()

        db.scalar, db.transaction = counted_scalar, counted_transaction


def count_statements(
    pipeline: Pipeline, before: Callable[[Any], None] | None = None
) -> list[StatementCounter]:
    """Counts the statements of each processor container the pipeline builds from now on (one
    counter per container, in order), after `before` has registered its handlers."""
    counters: list[StatementCounter] = []

    def customize(service: Any) -> None:
        if before is not None:
            before(service)
        counters.append(StatementCounter(service))

    pipeline.customize.append(customize)
    return counters


def test_a_batch_of_records_without_effect_is_claimed_and_completed_in_one_statement(
    pipeline: Pipeline,
) -> None:
    # Given one SQS batch of ten records of an unknown type (their handler has no database effect)
    counters = count_statements(pipeline)
    container = pipeline.processor_container()
    org_id, _ = pipeline.new_org()
    records = [_record(org_id, f"other_{i}", "invoice.paid", {"n": i}) for i in range(10)]
    # When the processor takes the batch
    answer = container({"Records": records}, LambdaContext())
    # Then every record is acknowledged, and the whole batch took one statement, no transaction
    assert answer == {"batchItemFailures": []}
    assert (counters[0].statements, counters[0].transactions) == (["claim_webhook_deliveries"], 0)
    # And each delivery is completed as `ignored` at its first attempt, as one by one
    rows = pipeline.rows(org_id)
    assert len(rows) == 10
    for row in rows:
        assert (row["status"], row["attempts"], row["outcome"]) == ("completed", 1, "ignored")
        assert row["outcome_detail"] == {"reason": "no handler for this event type"}
        assert row["processing_ms"] is not None
        assert row["completed_at"] >= row["last_attempt_at"] >= row["created_at"]
        assert row["claim_token"] is None
    # And a second delivery of the same batch is acknowledged as duplicates, in one statement again
    assert container({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    assert counters[0].statements == ["claim_webhook_deliveries"] * 2
    assert {(r["status"], r["attempts"]) for r in pipeline.rows(org_id)} == {("completed", 1)}


def test_a_handler_registered_again_with_an_effect_runs_in_its_own_transaction_again(
    pipeline: Pipeline,
) -> None:
    # Given an event type first registered as effect-free, then registered again with an effect
    def noted(ctx: EventContext, data: Any) -> Outcome:
        return Outcome("applied", {"n": data["n"]})

    def customize(service: Any) -> None:
        service.register("test.noted", noted, effect=False)
        service.register("test.noted", noted)

    counters = count_statements(pipeline, customize)
    container = pipeline.processor_container()
    org_id, _ = pipeline.new_org()
    records = [_record(org_id, f"noted_{i}", "test.noted", {"n": i}) for i in range(2)]
    # When the processor takes a batch of two
    assert container({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    # Then each record's handler and completion ran in a transaction of its own, after the claim
    assert counters[0].transactions == 2
    assert counters[0].statements == ["claim_webhook_deliveries"] + ["complete_webhook_delivery"] * 2
    assert [(r["status"], r["outcome"]) for r in pipeline.rows(org_id)] == [("completed", "applied")] * 2


def test_a_batch_of_two_orgs_completes_each_record_in_its_own_org(pipeline: Pipeline) -> None:
    # Given one batch whose records of an unknown type alternate between two orgs
    counters = count_statements(pipeline)
    (org_a, _), (org_b, _) = pipeline.new_org(), pipeline.new_org()
    records = [
        _record(org, f"{name}_{i}", "invoice.paid", {})
        for i in range(3)
        for org, name in ((org_a, "a"), (org_b, "b"))
    ]
    # When the processor takes it
    assert pipeline.processor_container()({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    # Then the one statement stored each delivery, completed, under its own org
    assert counters[0].statements == ["claim_webhook_deliveries"]
    assert {r["job_id"]: r["status"] for r in pipeline.rows(org_a)} == dict.fromkeys(
        ["a_0", "a_1", "a_2"], "completed"
    )
    assert {r["job_id"]: r["status"] for r in pipeline.rows(org_b)} == dict.fromkeys(
        ["b_0", "b_1", "b_2"], "completed"
    )


def test_a_lone_record_without_effect_takes_one_statement(pipeline: Pipeline) -> None:
    counters = count_statements(pipeline)
    org_id, _ = pipeline.new_org()
    answer = pipeline.processor_container()(
        {"Records": [_record(org_id, "alone", "invoice.paid", {})]}, LambdaContext()
    )
    assert answer == {"batchItemFailures": []}
    assert counters[0].statements == ["claim_webhook_deliveries"]
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["outcome"]) == ("completed", 1, "ignored")


def test_records_with_effect_still_commit_effect_and_mark_in_their_own_transaction(
    pipeline: Pipeline,
) -> None:
    # Given a batch of three bookings among unknown types
    counters = count_statements(pipeline)
    org_id, _ = pipeline.new_org()
    records = [_record(org_id, f"other_{i}", "invoice.paid", {}) for i in range(3)] + [
        _record(org_id, f"book_{i}", "appointment.book", book_data(f"2030-07-02T1{i}:00:00Z"))
        for i in range(3)
    ]
    # When the processor takes it
    assert pipeline.processor_container()({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    # Then the unknown types were completed by the claim; each booking had its own transaction
    # holding its effect and its completion mark
    assert counters[0].transactions == 3
    assert (
        counters[0].statements
        == ["claim_webhook_deliveries"] + ["book_appointment_with_lock", "complete_webhook_delivery"] * 3
    )
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert Counter((r["outcome"], r["attempts"]) for r in rows.values()) == {
        ("ignored", 1): 3,
        ("applied", 1): 3,
    }
    assert len(pipeline.appointments(org_id)) == 3


def test_an_effect_free_handler_that_fails_is_recorded_as_any_failure(pipeline: Pipeline) -> None:
    # Given handlers declared without effect: one that answers, one that fails
    def noted(ctx: EventContext, data: Any) -> Outcome:
        return Outcome("ignored", {"noted": data["n"]})

    def broken(ctx: EventContext, data: Any) -> Outcome:
        raise RetriableFailure("cannot say yet")

    def customize(service: Any) -> None:
        service.register("test.noted", noted, effect=False)
        service.register("test.broken", broken, effect=False)

    pipeline.customize.append(customize)
    org_id, _ = pipeline.new_org()
    records = [_record(org_id, "noted", "test.noted", {"n": 7}), _record(org_id, "broken", "test.broken", {})]
    # When a batch holds both
    answer = pipeline.processor_container()({"Records": records}, LambdaContext())
    # Then the answering one is completed with its outcome by the claim; the failing one runs
    # again on its own path, is recorded as a failed attempt and reported for a retry
    assert answer == {"batchItemFailures": [{"itemIdentifier": records[1]["messageId"]}]}
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert (rows["noted"]["status"], rows["noted"]["attempts"]) == ("completed", 1)
    assert rows["noted"]["outcome_detail"] == {"noted": 7}
    assert (rows["broken"]["status"], rows["broken"]["attempts"]) == ("failed", 1)
    assert "cannot say yet" in rows["broken"]["error_message"]


def test_an_effect_free_handler_run_again_on_its_own_path_gets_its_webhooks_org_id_and_data(
    pipeline: Pipeline,
) -> None:
    # Given a handler declared without effect that fails the first time it runs (ahead of the
    # batch's claim) and answers from its context and data after that
    calls: list[str] = []

    def late_echo(ctx: EventContext, data: Any) -> Outcome:
        calls.append(ctx.job_id)
        if len(calls) == 1:
            raise RetriableFailure("not yet")
        return Outcome("ignored", {"org": str(ctx.org_id), "job": ctx.job_id, "n": data["n"]})

    pipeline.customize.append(lambda service: service.register("test.late_echo", late_echo, effect=False))
    org_id, _ = pipeline.new_org()
    # When one of its webhooks is processed
    answer = pipeline.processor_container()(
        {"Records": [_record(org_id, "late", "test.late_echo", {"n": 5})]}, LambdaContext()
    )
    # Then the record's own run completes it with what the handler saw: its org, id and data
    assert answer == {"batchItemFailures": []}
    assert calls == ["late", "late"]
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    assert row["outcome_detail"] == {"org": org_id, "job": "late", "n": 5}


def test_batch_claim_completes_only_the_deliveries_it_claims(pipeline: Pipeline, app_conn: Any) -> None:
    # Given deliveries of an effect-free type: new, completed, held by another worker, failed once
    # before, and one whose claim went stale
    org_id, _ = pipeline.new_org()

    def claim(job: str) -> dict[str, Any]:
        [answer] = app_conn.execute(
            "SELECT slotguard.claim_webhook_delivery(%s, %s, 'invoice.paid', '{}', 5, 180)", (org_id, job)
        ).fetchone()
        return dict(answer)

    def fail(job: str, token: str) -> None:
        app_conn.execute(
            "SELECT slotguard.fail_webhook_delivery(%s, %s, %s, 'x', false, 1, NULL)", (org_id, job, token)
        )

    pipeline.processor_container()(
        {"Records": [_record(org_id, "done", "invoice.paid", {})]}, LambdaContext()
    )
    claim("busy")
    fail("failed", claim("failed")["token"])
    claim("stale")
    with psycopg.connect(pipeline.admin_url) as conn:
        conn.execute(
            "UPDATE slotguard.webhook_delivery_log SET last_attempt_at = now() - interval '1 hour'"
            " WHERE org_id = %s AND job_id = 'stale'",
            (org_id,),
        )
    done = {"outcome": "ignored", "detail": {"reason": "r"}, "processing_ms": 0}
    items = [
        {"org_id": org_id, "job_id": job, "event_type": "invoice.paid", "event_data": {}, "complete": done}
        for job in ("new", "done", "busy", "failed", "stale")
    ]
    # When they are claimed and completed in one statement
    [claims] = app_conn.execute(
        "SELECT slotguard.claim_webhook_deliveries(%s, 5, 180)", (Jsonb(items),)
    ).fetchone()
    # Then what it claimed is completed (one attempt more), the rest answered as a claim answers
    assert [(c["action"], c.get("attempt")) for c in claims] == [
        ("completed", 1),
        ("skip", 1),
        ("in_progress", 1),
        ("completed", 2),
        ("completed", 1),
    ]
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert {j: (r["status"], r["attempts"]) for j, r in rows.items()} == {
        "new": ("completed", 1),
        "done": ("completed", 1),
        "busy": ("processing", 0),
        "failed": ("completed", 2),
        "stale": ("completed", 1),
    }
    assert rows["failed"]["error_message"] is None
    assert all(r["claim_token"] is None for j, r in rows.items() if j != "busy")


def test_an_effect_free_handler_gets_its_webhooks_org_id_and_data_and_is_timed(pipeline: Pipeline) -> None:
    # Given a handler declared without effect that answers from its context and data, taking 50 ms
    def echo(ctx: EventContext, data: Any) -> Outcome:
        time.sleep(0.05)
        return Outcome("ignored", {"org": str(ctx.org_id), "job": ctx.job_id, "n": data["n"]})

    def customize(service: Any) -> None:
        service.register("test.echo", echo, effect=False)

    counters = count_statements(pipeline, customize)
    org_id, _ = pipeline.new_org()
    records = [_record(org_id, f"echo_{i}", "test.echo", {"n": i}) for i in range(3)]
    # When a batch of its webhooks is processed
    answer = pipeline.processor_container()({"Records": records}, LambdaContext())
    # Then each is completed by the batch's one claim statement, with what the handler saw of it:
    # its org, its webhook id and its data, and the time the handler took
    assert answer == {"batchItemFailures": []}
    assert counters[0].statements == ["claim_webhook_deliveries"]
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    for i in range(3):
        row = rows[f"echo_{i}"]
        assert row["outcome_detail"] == {"org": org_id, "job": f"echo_{i}", "n": i}
        assert 50 <= row["processing_ms"] < 5000


def test_a_booking_webhook_finding_its_calendar_locked_past_the_wait_fails_saying_the_calendar_was_busy(
    pipeline: Pipeline,
) -> None:
    # Given another transaction holding the default calendar's lock for 10:00-11:00 past the wait
    org_id, _ = pipeline.new_org()
    record = _record(org_id, "book_busy", "appointment.book", book_data("2030-07-02T10:00:00Z"))
    with psycopg.connect(pipeline.admin_url) as holder:
        holder.execute(
            "SELECT pg_advisory_xact_lock(k) FROM slotguard.calendar_lock_keys(%s, NULL, %s, %s) k",
            (org_id, "2030-07-02T10:00:00Z", "2030-07-02T11:00:00Z"),
        )
        # When a booking webhook for that hour is processed
        answer = pipeline.processor_container()({"Records": [record]}, LambdaContext())
        holder.rollback()
    # Then it is a failed attempt to retry, its error saying the calendar was busy
    assert answer == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["error_message"]) == (
        "failed",
        1,
        "RetriableFailure: the calendar was busy",
    )
