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

from tests.conftest import PgInstance
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
