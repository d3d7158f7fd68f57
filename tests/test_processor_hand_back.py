"""A record the invocation's remaining time cannot cover is handed back: its batch claim given
back (unspent) when at least RELEASE_MIN_MS = 300 ms are left, its message made visible again at
once, and the record reported as a batch item failure. Real signed webhooks on moto's SQS, real
SQS event shapes, the processor's handler with a Lambda context whose remaining time is fixed."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from slotguard.services.webhook_processor import HandedBack
from slotguard_local.events import LambdaContext, sqs_record
from slotguard_local.functions import load_function
from tests.conftest import log_records
from tests.webhook_support import Pipeline, book_data

BUDGET_MS = 3000  # a record's budget in the pipeline fixture: a 2,000 ms lock wait + 1,000 ms reserve


@dataclass
class FixedTime(LambdaContext):
    """A Lambda context whose remaining time is always `left_ms`, however long the batch runs."""

    left_ms: int = 0

    def get_remaining_time_in_millis(self) -> int:
        return self.left_ms


def receive(pipeline: Pipeline, count: int) -> list[dict[str, Any]]:
    """`count` messages off the main queue, each hidden for 30 s unless the processor shows it."""
    messages: list[dict[str, Any]] = []
    for _ in range(20):
        messages += pipeline.sqs.receive_message(
            QueueUrl=pipeline.queues.main_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=30,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if len(messages) >= count:
            break
    assert len(messages) == count, messages
    return messages


def job_of(message: dict[str, Any]) -> str:
    return str(message["MessageAttributes"]["webhook_id"]["StringValue"])


def visible_jobs(pipeline: Pipeline) -> list[str]:
    """The webhook ids of the messages a receive gets right now."""
    answer = pipeline.sqs.receive_message(
        QueueUrl=pipeline.queues.main_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    return [job_of(m) for m in answer.get("Messages", [])]


def run_batch(messages: list[dict[str, Any]], left_ms: int) -> tuple[Any, Any]:
    """The processor's handler on one SQS batch of `messages`; its answer and its module."""
    fn = load_function("webhook_processor")
    event = {"Records": [sqs_record(m, "arn:aws:sqs:us-east-1:000000000000:q") for m in messages]}
    return fn.lambda_handler(event, FixedTime(function_name="webhook_processor", left_ms=left_ms)), fn


@pytest.mark.parametrize(("left_ms", "released"), [(300, True), (299, False)])
def test_a_handed_back_claim_is_released_from_exactly_300_ms_left(
    pipeline: Pipeline, left_ms: int, released: bool
) -> None:
    # Given two bookings on the queue, taken in one batch (the batch claim holds both)
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "appointment.book", book_data("2030-10-01T10:00:00Z"))
    pipeline.send(org_id, secret, "appointment.book", book_data("2030-10-01T11:00:00Z"))
    first, second = receive(pipeline, 2)
    # When the invocation has `left_ms` left throughout (less than a record's budget)
    answer, fn = run_batch([first, second], left_ms)
    # Then the batch's first record ran, and the second was handed back, reported failed
    assert answer == {"batchItemFailures": [{"itemIdentifier": second["MessageId"]}]}
    [(kind, error, _)] = fn.processor.exceptions
    assert (kind, str(error)) == (
        HandedBack,
        f"{job_of(second)} handed back: {left_ms} ms left, a record may need {BUDGET_MS} ms",
    )
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert (rows[job_of(first)]["status"], rows[job_of(first)]["attempts"]) == ("completed", 1)
    # And with 300 ms left its claim was given back (pending, unclaimed, no attempt spent); with
    # 299 ms it was not tried (still claimed, re-claimed once stale, no attempt spent either)
    handed = rows[job_of(second)]
    assert handed["attempts"] == 0
    if released:
        assert (handed["status"], handed["claim_token"]) == ("pending", None)
    else:
        assert handed["status"] == "processing" and handed["claim_token"] is not None
    # And its message is visible again at once, in both cases
    assert visible_jobs(pipeline) == [job_of(second)]


def test_a_duplicate_copy_handed_back_before_any_claim_is_handed_back_cleanly(pipeline: Pipeline) -> None:
    # Given two copies of one booking webhook on the queue (posted twice), taken in one batch:
    # the first copy is claimed when it runs, the second copy holds no claim
    org_id, secret = pipeline.new_org()
    job = pipeline.send(org_id, secret, "appointment.book", book_data("2030-10-02T10:00:00Z"))
    pipeline.send(org_id, secret, "appointment.book", book_data("2030-10-02T10:00:00Z"), webhook_id=job)
    first, second = receive(pipeline, 2)
    # When the invocation has 300 ms left throughout (enough to release a claim, had it one)
    answer, fn = run_batch([first, second], 300)
    # Then the first copy was applied, and the second copy was handed back as such (nothing to
    # release) and is visible again at once
    assert answer == {"batchItemFailures": [{"itemIdentifier": second["MessageId"]}]}
    [(kind, error, _)] = fn.processor.exceptions
    assert (kind, str(error)) == (
        HandedBack,
        f"{job} handed back: 300 ms left, a record may need {BUDGET_MS} ms",
    )
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    assert visible_jobs(pipeline) == [job]


def test_a_handed_back_record_whose_message_cannot_be_shown_again_says_so(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given two bookings taken in one batch, and a processor whose queue no longer exists
    org_id, secret = pipeline.new_org()
    pipeline.send(org_id, secret, "appointment.book", book_data("2030-10-03T10:00:00Z"))
    pipeline.send(org_id, secret, "appointment.book", book_data("2030-10-03T11:00:00Z"))
    first, second = receive(pipeline, 2)
    gone = pipeline.sqs.create_queue(QueueName=f"gone-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    pipeline.sqs.delete_queue(QueueUrl=gone)
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", gone)
    caplog.set_level(logging.INFO)
    # When the invocation has 300 ms left throughout, so the second record is handed back
    answer, fn = run_batch([first, second], 300)
    # Then it is still handed back (reported failed, its claim given back) ...
    assert answer == {"batchItemFailures": [{"itemIdentifier": second["MessageId"]}]}
    [(kind, _, _)] = fn.processor.exceptions
    assert kind is HandedBack
    handed = {r["job_id"]: r for r in pipeline.rows(org_id)}[job_of(second)]
    assert (handed["status"], handed["attempts"], handed["claim_token"]) == ("pending", 0, None)
    # ... and the log says its message stays hidden (until the visibility timeout), naming the
    # record and the error's type
    [hidden] = log_records(caplog, "handed-back record stays hidden")
    assert (hidden.levelname, hidden.job_id, hidden.error) == ("INFO", job_of(second), "QueueDoesNotExist")
