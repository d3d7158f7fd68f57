"""Every webhook metric README.md lists is printed (CloudWatch EMF, one JSON object a line, with
"_aws") by the path that should count it: each `WebhookRejected` reason by causing that rejection,
and the processor's counts by running the processor on real SQS messages.

Already checked elsewhere, not repeated here: `WebhookReceived`, `WebhookProcessed` and
`WebhookProcessingTime` (test_openapi_and_emf.py), and the metrics the alarms read
(`WebhookProcessed`, `WebhookDeadLettered` from the processor and the reconciler,
`WebhookUnparsable`) under the dimensions the alarms name (test_alarms.py)."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slotguard.services import webhook_metrics
from slotguard.services.webhook_events import EventContext, Outcome, RetriableFailure
from slotguard_local.events import LambdaContext, sqs_record
from tests.conftest import ROOT, signed_headers
from tests.webhook_support import Pipeline

BODY = json.dumps({"type": "appointment.book", "timestamp": "2030-01-01T00:00:00Z", "data": {}})


def emf(out: str) -> list[dict[str, Any]]:
    """The EMF records a function printed."""
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def names(records: list[dict[str, Any]]) -> list[str]:
    """Every metric name the records carry, once per record."""
    return [
        metric["Name"]
        for record in records
        for directive in record["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    ]


def rejection_reasons(records: list[dict[str, Any]]) -> list[str]:
    """The `reason` dimension of each WebhookRejected record (a dimension CloudWatch extracts)."""
    found = []
    for record in records:
        for directive in record["_aws"]["CloudWatchMetrics"]:
            if webhook_metrics.REJECTED in {m["Name"] for m in directive["Metrics"]}:
                assert any("reason" in d for d in directive["Dimensions"]), directive
                found.append(record["reason"])
    return found


def readme_reasons() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    [listed] = re.findall(r"\| `WebhookRejected` \(dimension `reason`: ([a-z_, ]+)\)", readme)
    return {reason.strip() for reason in listed.split(",")}


def _cause(case: str, pipeline: Pipeline) -> tuple[str, str, dict[str, str]]:
    """An org id, a body and headers that make the receiver refuse a webhook for `case`."""
    org_id, secret = pipeline.new_org()
    good = signed_headers(secret, "msg_emf", BODY)
    now = datetime.now(UTC)
    if case == "missing_headers":
        return org_id, BODY, {k: v for k, v in good.items() if k != "webhook-signature"}
    if case == "bad_timestamp":
        return org_id, BODY, {**good, "webhook-timestamp": "soon"}
    if case == "stale_timestamp":
        return org_id, BODY, signed_headers(secret, "msg_emf", BODY, now - timedelta(minutes=6))
    if case == "future_timestamp":
        return org_id, BODY, signed_headers(secret, "msg_emf", BODY, now + timedelta(minutes=6))
    if case == "bad_signature":
        _, other = pipeline.new_org()
        return org_id, BODY, signed_headers(other, "msg_emf", BODY)
    if case == "malformed_signature":  # no entry of the header parses as `v1,<signature>`
        return org_id, BODY, {**good, "webhook-signature": "junk"}
    if case == "unknown_org":
        return str(uuid.uuid4()), BODY, good
    assert case == "too_large"
    big = json.dumps({"type": "note", "data": "x" * (256 * 1024)})
    return org_id, big, signed_headers(secret, "msg_emf", big)


REASONS = {
    "missing_headers": 401,
    "bad_timestamp": 401,
    "stale_timestamp": 401,
    "future_timestamp": 401,
    "bad_signature": 401,
    "malformed_signature": 401,
    "unknown_org": 401,
    "too_large": 413,
}


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_each_rejection_is_counted_under_its_reason(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], reason: str
) -> None:
    # Given a webhook the receiver must refuse for this reason
    org_id, body, headers = _cause(reason, pipeline)
    capsys.readouterr()
    # When it is posted
    status, _ = pipeline.post(org_id, body, headers)
    # Then it is refused, and counted once as WebhookRejected with that reason, never as received
    records = emf(capsys.readouterr().out)
    assert status == REASONS[reason]
    assert rejection_reasons(records) == [reason]
    assert webhook_metrics.RECEIVED not in names(records)
    assert pipeline.queues.depth(pipeline.sqs) == 0


@pytest.mark.parametrize("spelling", ["not-a-uuid", "upper", "braced"])
def test_an_org_id_that_is_not_an_orgs_canonical_id_is_counted_as_an_unknown_org(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    # Given a webhook signed with a real org's secret, posted under a path that is not its id as
    # the JWT spells it: not a UUID at all, or the org's UUID in capitals or in braces
    org_id, secret = pipeline.new_org()
    target = {"not-a-uuid": "not-a-uuid", "upper": org_id.upper(), "braced": "{" + org_id + "}"}[spelling]
    capsys.readouterr()
    # When it is posted
    status, _ = pipeline.post(target, BODY, signed_headers(secret, "msg_emf", BODY))
    # Then it is refused as for an org that does not exist, and counted so
    records = emf(capsys.readouterr().out)
    assert status == 401
    assert rejection_reasons(records) == ["unknown_org"]
    assert pipeline.queues.depth(pipeline.sqs) == 0


def test_the_readme_lists_exactly_the_reasons_the_receiver_counts() -> None:
    # The reasons an operator can see on the WebhookRejected metric are the ones the tests above
    # cause (a webhook-id the receiver cannot take is a 400, said plainly, not a rejection), and
    # not_via_edge, which a receiver behind the edge counts (tests/test_edge.py causes it)
    assert readme_reasons() == {*REASONS, "not_via_edge"}


def _received(pipeline: Pipeline, n: int) -> dict[str, Any]:
    """The next n messages of the main queue as the SQS event Lambda hands the processor."""
    messages: list[dict[str, Any]] = []
    while len(messages) < n:
        messages += pipeline.sqs.receive_message(
            QueueUrl=pipeline.queues.main_url,
            MaxNumberOfMessages=n - len(messages),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
    arn = "arn:aws:sqs:us-east-1:000000000000:" + pipeline.queues.main_url.rsplit("/", 1)[-1]
    return {"Records": [sqs_record(m, arn) for m in messages]}


def _book(minute: int) -> dict[str, Any]:
    return {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": f"2035-05-01T10:{minute:02d}:00Z",
        "duration_minutes": 5,
    }


def test_each_processor_count_is_printed_by_the_path_that_makes_it(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def flaky(ctx: EventContext, data: Any) -> Outcome:
        raise RetriableFailure("downstream timeout")

    pipeline.customize.append(lambda service: service.register("test.flaky", flaky))
    org_id, secret = pipeline.new_org()
    processor = pipeline.processor_container()

    # When a handler fails with attempts left
    pipeline.send(org_id, secret, "test.flaky", {})
    capsys.readouterr()
    answer = processor(_received(pipeline, 1), LambdaContext(function_name="webhook_processor"))
    # Then it is WebhookFailed (to be retried), not dead-lettered
    printed = names(emf(capsys.readouterr().out))
    assert len(answer["batchItemFailures"]) == 1
    assert printed.count(webhook_metrics.FAILED) == 1
    assert webhook_metrics.DEAD_LETTERED not in printed
    assert webhook_metrics.PROCESSING_TIME in printed

    # When a handler fails on its last attempt (a processor allowed one attempt)
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "1")
    last_chance = pipeline.processor_container()
    gave_up = pipeline.send(org_id, secret, "test.flaky", {})
    capsys.readouterr()
    answer = last_chance(_received(pipeline, 1), LambdaContext(function_name="webhook_processor"))
    # Then it is WebhookDeadLettered, not WebhookFailed
    printed = names(emf(capsys.readouterr().out))
    assert answer == {"batchItemFailures": []}
    assert {r["job_id"]: r["status"] for r in pipeline.rows(org_id)}[gave_up] == "dead_letter"
    assert printed.count(webhook_metrics.DEAD_LETTERED) == 1
    assert webhook_metrics.FAILED not in printed

    # When a booking is processed, and the same message is delivered again
    pipeline.send(org_id, secret, "appointment.book", _book(0))
    event = _received(pipeline, 1)
    capsys.readouterr()
    assert processor(event, LambdaContext(function_name="webhook_processor")) == {"batchItemFailures": []}
    first = names(emf(capsys.readouterr().out))
    assert processor(event, LambdaContext(function_name="webhook_processor")) == {"batchItemFailures": []}
    second = names(emf(capsys.readouterr().out))
    # Then the first is WebhookProcessed, the copy WebhookDuplicateSkipped
    assert first.count(webhook_metrics.PROCESSED) == 1
    assert webhook_metrics.DUPLICATE not in first
    assert second.count(webhook_metrics.DUPLICATE) == 1
    assert webhook_metrics.PROCESSED not in second

    # When a batch of two bookings reaches an invocation with 1 s left (a record needs the lock
    # wait plus the statements' reserve, 3 s here): the first runs, the second has no time
    jobs = [pipeline.send(org_id, secret, "appointment.book", _book(m)) for m in (10, 20)]
    event = _received(pipeline, 2)
    capsys.readouterr()
    short = LambdaContext(function_name="webhook_processor", _deadline=time.monotonic() + 1)
    answer = processor(event, short)
    # Then the second is handed back, counted as WebhookHandedBack, its attempt unspent
    printed = names(emf(capsys.readouterr().out))
    assert len(answer["batchItemFailures"]) == 1
    assert printed.count(webhook_metrics.HANDED_BACK) == 1
    assert printed.count(webhook_metrics.PROCESSED) == 1
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    statuses = sorted((rows[j]["status"], rows[j]["attempts"]) for j in jobs)
    assert statuses == [("completed", 1), ("pending", 0)]


def test_records_the_batch_claim_completes_are_each_counted_processed(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch of three webhooks of a type without a handler (completed by the batch's claim)
    org_id, secret = pipeline.new_org()
    for n in range(3):
        pipeline.send(org_id, secret, "invoice.paid", {"n": n})
    event = _received(pipeline, 3)
    capsys.readouterr()
    # When the processor takes it
    answer = pipeline.processor_container()(event, LambdaContext(function_name="webhook_processor"))
    # Then each of the three is counted WebhookProcessed, as a record processed on its own is
    records = emf(capsys.readouterr().out)
    assert answer == {"batchItemFailures": []}
    counted = [r[webhook_metrics.PROCESSED] for r in records if webhook_metrics.PROCESSED in r]
    assert sum(v if isinstance(v, int | float) else sum(v) for v in counted) == 3
    assert {r["status"] for r in pipeline.rows(org_id)} == {"completed"}


def test_a_dead_letter_without_its_identity_is_counted_unparsable_and_stays_queued(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a message on the dead-letter queue without the attributes the reconciler records a
    # webhook by (org, webhook id, type), as SQS would hand it to the reconciler
    pipeline.sqs.send_message(QueueUrl=pipeline.queues.dlq_url, MessageBody="{}")
    got = pipeline.sqs.receive_message(
        QueueUrl=pipeline.queues.dlq_url,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        WaitTimeSeconds=1,
    )["Messages"]
    dlq_arn = pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.queues.dlq_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    reconciler = pipeline.dlq_source()._new_container()
    capsys.readouterr()
    # When the reconciler gets it
    answer = reconciler(
        {"Records": [sqs_record(m, dlq_arn) for m in got]}, LambdaContext(function_name="dlq_reconciler")
    )
    # Then it stays on the queue (a batch item failure), counted once as unparsable, not dead-lettered
    printed = names(emf(capsys.readouterr().out))
    assert answer == {"batchItemFailures": [{"itemIdentifier": got[0]["MessageId"]}]}
    assert printed.count(webhook_metrics.UNPARSABLE) == 1
    assert webhook_metrics.DEAD_LETTERED not in printed
