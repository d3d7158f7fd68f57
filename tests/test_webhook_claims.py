"""Only a handler that ran to an outcome spends an attempt (issue 10, item 2): a claim whose
handler never got to an outcome (the database went away before or while applying, the
invocation never reached the record, it crashed or timed out) costs nothing of
WEBHOOK_MAX_ATTEMPTS; a claim is owned by its token, so a late finisher whose claim was taken
over can neither complete nor fail the delivery. Real Postgres as the application role, moto's
SQS with a real redrive policy."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from slotguard.services.webhook_events import EventContext, Outcome
from slotguard_local.events import LambdaContext, sqs_record
from tests.conftest import PgInstance
from tests.webhook_support import Pipeline, book_data


class SimulatedCrash(BaseException):
    """Escapes the batch processor's per-record handling, like a runtime crash (OOM, kill)."""


def all_completed(p: Pipeline, org_id: str, n: int) -> Any:
    return lambda: sum(r["status"] == "completed" for r in p.rows(org_id)) == n and p.queues.depth(p.sqs) == 0


def assert_each_applied_once_at_its_first_attempt(p: Pipeline, org_id: str, jobs: list[str]) -> None:
    rows = {r["job_id"]: r for r in p.rows(org_id)}
    assert set(rows) == set(jobs)
    assert {(r["status"], r["outcome"]) for r in rows.values()} == {("completed", "applied")}
    assert {j: r["attempts"] for j, r in rows.items()} == dict.fromkeys(jobs, 1)
    assert all(r["claim_token"] is None for r in rows.values())
    makers = Counter(a["created_by"] for a in p.appointments(org_id))
    assert makers == Counter(f"webhook:{j}" for j in jobs)
    assert p.queues.depth(p.sqs, p.queues.dlq_url) == 0


def test_a_database_outage_in_the_middle_of_a_batch_spends_no_attempt(
    pg: PgInstance, pipeline: Pipeline
) -> None:
    if pg.stop is None:
        pytest.skip("needs the embedded server, which the test can stop (DATABASE_URL is external)")
    # Given a batch of ten bookings whose fourth handler run finds the database stopped under it
    runs: list[str] = []

    def customize(service: Any) -> None:
        real = service._handlers["appointment.book"]

        def book(ctx: EventContext, data: Any) -> Outcome:
            runs.append(ctx.job_id)
            if len(runs) == 4:
                pg.stop(mode="immediate")
            return real(ctx, data)  # type: ignore[no-any-return]

        service.register("appointment.book", book)

    pipeline.customize.append(customize)
    org_id, secret = pipeline.new_org()
    jobs = [
        pipeline.send(org_id, secret, "appointment.book", book_data(f"2031-02-03T{10 + i}:00:00Z"))
        for i in range(10)
    ]
    source = pipeline.event_source(batch_size=10, batching_window_s=1)
    try:
        # When the batch is processed (three applied, then the outage), and the database comes back
        assert source.poll_once() == 10
        assert len(runs) == 4
    finally:
        pg.start()
    assert source.stats.reported_failures == 7
    pipeline.drain(source, all_completed(pipeline, org_id, 10), timeout_s=60)
    # Then every webhook is applied once and none spent an attempt on the outage
    assert_each_applied_once_at_its_first_attempt(pipeline, org_id, jobs)


def test_a_connection_lost_under_the_handler_gives_the_claim_back_unspent(pipeline: Pipeline) -> None:
    # Given a booking webhook whose first handler run loses its database connection midway
    # (the server ends the session, as a failover or a proxy restart does; the database stays up)
    lost: list[int] = []

    def customize(service: Any) -> None:
        real = service._handlers["appointment.book"]

        def book(ctx: EventContext, data: Any) -> Outcome:
            if not lost:
                lost.append(service._db._conn.info.backend_pid)
                with psycopg.connect(pipeline.admin_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (lost[0],))
            return real(ctx, data)  # type: ignore[no-any-return]

        service.register("appointment.book", book)

    pipeline.customize.append(customize)
    org_id, secret = pipeline.new_org()
    job_id = pipeline.send(org_id, secret, "appointment.book", book_data("2031-01-02T10:00:00Z"))
    source = pipeline.event_source()
    container = [source._new_container()]
    # When it is processed
    assert source.poll_once(container, wait_time_s=0) == 1
    # Then the record is reported for a retry and its claim is given back unspent
    assert (lost != [], source.stats.reported_failures) == (True, 1)
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["claim_token"], row["error_message"]) == (
        "pending",
        0,
        None,
        None,
    )
    assert pipeline.appointments(org_id) == []
    # And the next receive applies it at its first attempt
    pipeline.drain(source, all_completed(pipeline, org_id, 1))
    assert_each_applied_once_at_its_first_attempt(pipeline, org_id, [job_id])


@pytest.mark.parametrize("death", ["crash", "timeout"])
def test_records_a_dead_invocation_never_reached_are_applied_once_without_spending_an_attempt(
    pipeline: Pipeline, death: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of ten bookings and a first invocation that dies after its third record:
    # a crash of the whole function, or a hang past the function's timeout (a 2 s function, whose
    # records need far less than that: it starts each of them)
    monkeypatch.setenv("BOOKING_LOCK_WAIT_MS", "100")
    monkeypatch.setenv("WEBHOOK_STATEMENT_RESERVE_MS", "100")
    release = threading.Event()
    died = threading.Event()

    def customize(service: Any) -> None:
        real_process = service.process
        seen = [0]

        def process(message: Any, *args: Any) -> Any:
            if not died.is_set() and seen[0] == 3:
                died.set()
                if death == "crash":
                    raise SimulatedCrash
                release.wait(30)
            seen[0] += 1
            return real_process(message, *args)

        service.process = process

    pipeline.customize.append(customize)
    org_id, secret = pipeline.new_org()
    jobs = [
        pipeline.send(org_id, secret, "appointment.book", book_data(f"2031-03-04T{10 + i}:00:00Z"))
        for i in range(10)
    ]
    source = pipeline.event_source(batch_size=10, batching_window_s=1, function_timeout_s=2)
    try:
        # When the batch is processed, and SQS redelivers what the dead invocation left
        assert source.poll_once() == 10
        assert died.is_set()
        assert (source.stats.failed_invocations, source.stats.timeouts) == (
            (1, 0) if death == "crash" else (0, 1)
        )
        rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
        assert Counter(r["status"] for r in rows.values()) == {"completed": 3, "processing": 7}
        pipeline.drain(source, all_completed(pipeline, org_id, 10), timeout_s=60)
    finally:
        release.set()  # the hung invocation finishes late: it must change nothing
    time.sleep(1)
    # Then every webhook is applied exactly once, and the dead invocation spent no attempt
    assert_each_applied_once_at_its_first_attempt(pipeline, org_id, jobs)


def test_a_late_finisher_whose_claim_was_taken_over_cannot_complete(pipeline: Pipeline) -> None:
    # Given a booking webhook whose first processor is stuck inside its handler
    stuck, release = threading.Event(), threading.Event()

    def customize_slow(service: Any) -> None:
        real = service._handlers["appointment.book"]

        def slow_book(ctx: EventContext, data: Any) -> Outcome:
            stuck.set()
            release.wait(10)
            return real(ctx, data)  # type: ignore[no-any-return]

        service.register("appointment.book", slow_book)

    org_id, secret = pipeline.new_org()
    job_id = pipeline.send(org_id, secret, "appointment.book", book_data("2031-04-05T10:00:00Z"))
    [message] = pipeline.sqs.receive_message(
        QueueUrl=pipeline.queues.main_url, AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    event = {"Records": [sqs_record(message, "arn:aws:sqs:us-east-1:000000000000:q")]}
    pipeline.customize.append(customize_slow)
    late = pipeline.processor_container()
    pipeline.customize.clear()
    owner = pipeline.processor_container()
    answers: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: answers.update(late=late(event, LambdaContext())))
    thread.start()
    try:
        assert stuck.wait(10)
        # When its claim goes stale and another processor takes the delivery over and applies it
        with psycopg.connect(pipeline.admin_url) as conn:
            conn.execute(
                "UPDATE slotguard.webhook_delivery_log SET last_attempt_at = now() - interval '1 hour'"
                " WHERE org_id = %s AND job_id = %s",
                (org_id, job_id),
            )
        assert owner(event, LambdaContext()) == {"batchItemFailures": []}
    finally:
        # And the first one finishes late
        release.set()
        thread.join(15)
    # Then the late finisher could not complete it (its record is reported, not acknowledged)
    assert answers["late"] == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    # And the delivery is the owner's: applied once, one attempt, no error from the late one
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["outcome"], row["attempts"]) == ("completed", "applied", 1)
    assert row["outcome_detail"]["status"] == "created"
    assert row["error_message"] is None
    assert [a["created_by"] for a in pipeline.appointments(org_id)] == [f"webhook:{job_id}"]


def test_only_the_current_claim_token_records_an_outcome(pipeline: Pipeline, app_conn: Any) -> None:
    # Given a delivery claimed by a worker that then stalls (its claim goes stale)
    org_id, _ = pipeline.new_org()

    def claim() -> dict[str, Any]:
        [answer] = app_conn.execute(
            "SELECT slotguard.claim_webhook_delivery(%s, 'job', 'invoice.paid', '{}', 3, 180)", (org_id,)
        ).fetchone()
        return dict(answer)

    first = claim()
    assert (first["action"], first["attempt"]) == ("process", 1)
    assert claim()["action"] == "in_progress"
    with psycopg.connect(pipeline.admin_url) as conn:
        conn.execute(
            "UPDATE slotguard.webhook_delivery_log SET last_attempt_at = now() - interval '1 hour'"
            " WHERE org_id = %s",
            (org_id,),
        )
    # When another worker re-claims it
    second = claim()
    # Then the re-claim is the same attempt under a new token: the stalled claim spent nothing
    assert (second["action"], second["attempt"]) == ("process", 1)
    assert second["token"] != first["token"]
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], str(row["claim_token"])) == ("processing", 0, second["token"])

    def complete(token: str) -> bool:
        [done] = app_conn.execute(
            "SELECT slotguard.complete_webhook_delivery(%s, 'job', %s, 'ignored', %s, 5)",
            (org_id, token, Jsonb({})),
        ).fetchone()
        return bool(done)

    def fail(token: str) -> bool:
        [done] = app_conn.execute(
            "SELECT slotguard.fail_webhook_delivery(%s, 'job', %s, 'late', true, 5, NULL)", (org_id, token)
        ).fetchone()
        return bool(done)

    def release(token: str) -> bool:
        [done] = app_conn.execute(
            "SELECT slotguard.release_webhook_delivery(%s, 'job', %s)", (org_id, token)
        ).fetchone()
        return bool(done)

    # And the stalled worker can neither fail, complete nor give back the current worker's claim
    assert fail(first["token"]) is False
    assert complete(first["token"]) is False
    assert release(first["token"]) is False
    [row] = pipeline.rows(org_id)
    assert (row["status"], str(row["claim_token"])) == ("processing", second["token"])
    # And the current one completes it
    assert complete(second["token"]) is True
    assert complete(second["token"]) is False
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["claim_token"]) == ("completed", 1, None)


def test_a_message_reusing_a_webhook_id_with_other_content_never_completes_its_event(
    pipeline: Pipeline, app_conn: Any
) -> None:
    # Given a booking event whose delivery is claimed by a worker (its handler running)
    org_id, _ = pipeline.new_org()
    data = Jsonb({"type": "appointment.book", "data": book_data("2031-03-03T10:00:00Z")})

    def claim(event_type: str, payload: Any) -> dict[str, Any]:
        [answer] = app_conn.execute(
            "SELECT slotguard.claim_webhook_delivery(%s, 'msg_1', %s, %s, 5, 180)",
            (org_id, event_type, payload),
        ).fetchone()
        return dict(answer)

    first = claim("appointment.book", data)
    assert first["action"] == "process"
    with psycopg.connect(pipeline.admin_url) as conn:  # its claim goes stale (the worker stalls)
        conn.execute(
            "UPDATE slotguard.webhook_delivery_log SET last_attempt_at = now() - interval '1 hour'"
            " WHERE org_id = %s",
            (org_id,),
        )
    # When messages with the same webhook id but another type, or another payload, are claimed,
    # alone or by a batch claim that would complete an effect-free (unknown) type at once
    other_type = claim("no.such.type", data)
    other_payload = claim("appointment.book", Jsonb({"type": "appointment.book", "data": {}}))
    [batch] = app_conn.execute(
        "SELECT slotguard.claim_webhook_deliveries(%s, 5, 180)",
        (
            Jsonb(
                [
                    {
                        "org_id": str(org_id),
                        "job_id": "msg_1",
                        "event_type": "no.such.type",
                        "event_data": {},
                        "complete": {"outcome": "ignored", "detail": {}, "processing_ms": 1},
                    }
                ]
            ),
        ),
    ).fetchone()
    # Then each is answered skip (its content dropped), and the row is still the event's claim
    assert other_type == other_payload == {"action": "skip", "status": "mismatch", "attempt": 0}
    assert batch == [{"action": "skip", "status": "mismatch", "attempt": 0}]
    [row] = pipeline.rows(org_id)
    assert (row["event_type"], row["status"], str(row["claim_token"])) == (
        "appointment.book",
        "processing",
        first["token"],
    )
    # And the event's own message still claims and completes it
    [done] = app_conn.execute(
        "SELECT slotguard.complete_webhook_delivery(%s, 'msg_1', %s, 'applied', '{}', 5)",
        (org_id, first["token"]),
    ).fetchone()
    assert done is True
    assert claim("appointment.book", data) == {"action": "skip", "status": "completed", "attempt": 1}
