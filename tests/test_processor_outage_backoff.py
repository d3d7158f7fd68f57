"""A database the processor cannot reach: each receive of a webhook's message is reported failed
and hidden on the queue (SQS's ChangeMessageVisibility) for a backoff that grows with the
message's receive count, not for the queue's own visibility timeout. Real SQS on moto's server,
the processor's handler with its database behind a closed port."""

from __future__ import annotations

import math
import time
from typing import Any

import psycopg
import pytest

from slotguard.services.webhook_events import EventContext, Outcome, RetriableFailure
from tests.conftest import PgInstance
from tests.connection_cutter import ConnectionCutter
from tests.webhook_support import Pipeline, book_data

BASE_S, CAP_S = 6, 600  # the backoff policy: the queue's own visibility timeout is 2 s


def backoff_range(receive_count: int) -> tuple[int, int]:
    """Half of the capped exponential delay fixed, half random (equal jitter)."""
    ceiling = min(CAP_S, BASE_S * 2 ** (receive_count - 1))
    return math.ceil(ceiling / 2), ceiling


def test_a_database_outage_hides_the_message_for_a_backoff_growing_with_its_receive_count(
    pipeline: Pipeline, pg: PgInstance, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a webhook on the queue, and a processor whose database is unreachable (a closed port)
    org_id, secret = pipeline.new_org()
    pipeline.send(
        org_id,
        secret,
        "appointment.book",
        book_data("2030-06-01T10:00:00Z"),
    )
    monkeypatch.setenv("WEBHOOK_BACKOFF_BASE_S", str(BASE_S))
    monkeypatch.setenv("WEBHOOK_BACKOFF_CAP_S", str(CAP_S))
    monkeypatch.setenv("DATABASE_URL", psycopg.conninfo.make_conninfo(pg.app_url, port=str(closed_port)))
    received: list[int] = []  # the receive count of each message the processor was given
    hidden: list[int] = []  # each visibility change the processor sent to SQS, in seconds

    def customize(service: Any) -> None:
        process = service.process

        def counting(message: Any, remaining_ms: Any = None) -> Any:
            received.append(message.receive_count)
            return process(message, remaining_ms)

        service.process = counting
        service._delay_retry.__self__._sqs.meta.events.register(
            "provide-client-params.sqs.ChangeMessageVisibility",
            lambda params, **_: hidden.append(params["VisibilityTimeout"]),
        )

    pipeline.customize.append(customize)
    source = pipeline.event_source()
    container = [source._new_container()]
    # When the event source delivers it (its first receive), and again once it is visible again
    first_at = time.monotonic()
    assert source.poll_once(container, wait_time_s=0) == 1
    pipeline.drain(source, lambda: len(received) == 2, timeout_s=3 * BASE_S)
    second_at = time.monotonic()
    # Then each receive was reported failed, not deleted, and hidden for the backoff of its
    # receive count: up to 6 s after the first, up to 12 s after the second
    assert received == [1, 2]
    assert (source.stats.reported_failures, source.stats.deleted) == (2, 0)
    assert len(hidden) == 2, hidden
    low, high = backoff_range(1)
    assert low <= hidden[0] <= high
    low, high = backoff_range(2)
    assert low <= hidden[1] <= high
    # And SQS kept it hidden that long, past the queue's own visibility timeout (2 s)
    assert second_at - first_at >= hidden[0] > 2
    # And the outage spent no attempt: nothing of the delivery was recorded
    assert pipeline.rows(org_id) == []
    assert pipeline.queues.depth(pipeline.sqs) == 1


def test_a_database_lost_between_a_failed_attempt_and_its_record_spends_no_attempt_and_is_retried(
    pipeline: Pipeline, pg: PgInstance, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # Given a webhook whose handler fails once, and a processor whose database connection goes
    # through a proxy that is shut, with its connections, the moment the failure is to be recorded
    calls: list[int] = []

    def fails_once(ctx: EventContext, data: Any) -> Outcome:
        calls.append(1)
        if len(calls) == 1:
            raise RetriableFailure("downstream timeout")
        return Outcome("applied", {"calls": len(calls)})

    cutter = ConnectionCutter.before(pg.app_url)
    request.addfinalizer(cutter.stop)  # shut at the failure, or here if the test stops before it
    monkeypatch.setenv("WEBHOOK_BACKOFF_BASE_S", str(BASE_S))
    monkeypatch.setenv("WEBHOOK_BACKOFF_CAP_S", str(CAP_S))
    monkeypatch.setenv("DATABASE_URL", cutter.url(pg.app_url))
    hidden: list[int] = []

    def customize(service: Any) -> None:
        service.register("test.fails_once", fails_once)
        record = service._log.fail

        def database_lost_first(**kw: Any) -> Any:
            cutter.stop()
            return record(**kw)

        service._log.fail = database_lost_first
        service._delay_retry.__self__._sqs.meta.events.register(
            "provide-client-params.sqs.ChangeMessageVisibility",
            lambda params, **_: hidden.append(params["VisibilityTimeout"]),
        )

    pipeline.customize.append(customize)
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "test.fails_once", {})
    source = pipeline.event_source()
    # When the processor receives it: the handler fails, and the database is gone when the
    # failure is to be recorded
    received_at = time.monotonic()
    assert source.poll_once([source._new_container()], wait_time_s=0) == 1
    # Then the record is reported failed, not deleted, and hidden for the outage backoff of its
    # first receive
    assert (source.stats.reported_failures, source.stats.deleted) == (1, 0)
    low, high = backoff_range(1)
    assert len(hidden) == 1 and low <= hidden[0] <= high, hidden
    # And SQS keeps it hidden past the queue's own visibility timeout (2 s; the backoff is >= 3 s)
    time.sleep(max(0.0, received_at + 2.5 - time.monotonic()))
    attributes = pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.queues.main_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "0",
        "1",
    )
    # And the claim stays as it was, the attempt unspent and no error recorded
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["error_message"]) == ("processing", 0, None)
    assert pipeline.queues.depth(pipeline.sqs) == 1
    # When the database is back and the message comes back after its backoff (the claim stale)
    pipeline.customize.remove(customize)
    pipeline.customize.append(lambda service: service.register("test.fails_once", fails_once))
    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    pipeline.drain(
        pipeline.event_source(),
        lambda: pipeline.rows(org_id)[0]["status"] == "completed",
        timeout_s=3 * BASE_S,
        describe=lambda: pipeline.rows(org_id),
    )
    # Then it completes as its first attempt that reached an outcome, and the message is gone
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["outcome"]) == ("completed", 1, "applied")
    assert row["error_message"] is None
    assert len(calls) == 2
    assert pipeline.queues.depth(pipeline.sqs) == 0
