"""GET /webhook-metrics/queue-health against each threshold README.md states ("Queue health
thresholds"), on both sides of it: the DLQ not empty (degraded) and holding >= 10 (unhealthy), the
oldest message >= 5 min (degraded) and >= 15 min (unhealthy), >= 1000 waiting (degraded), the
org's dead letters (degraded), the worker not Enabled (unhealthy). Real SQS, CloudWatch and Lambda
APIs (moto's server), real Postgres; everything else healthy in each case."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from slotguard_local.functions import load_function
from tests.conftest import ApiClient, create_moto_function, log_records
from tests.test_metrics_api import seed
from tests.webhook_support import Pipeline

HEALTH = "/webhook-metrics/queue-health"


def healthy_worker(pipeline: Pipeline) -> None:
    """The local poller's state file, as a running poller writes it (state Enabled, just now)."""
    pipeline.event_source().write_state()


def ask(pipeline: Pipeline, org_id: str | None = None, *, admin: bool = True) -> dict[str, Any]:
    """queue-health as an org's admin (or member), read afresh (a fresh metrics container, no
    shared cache)."""
    fn = load_function("metrics")
    fn.service.queue_health_cache_s = 0
    claims = {"sub": "ops", "org_id": org_id or str(uuid.uuid4())} | ({"role": "admin"} if admin else {})
    res = ApiClient(fn, claims).get(HEALTH)
    assert res.status == 200, res.body
    body: dict[str, Any] = res.body
    return body


def assert_health(body: dict[str, Any], status: str) -> None:
    # the answer names one reason for the one threshold crossed, none when healthy
    assert (body["status"], len(body["reasons"])) == (status, 0 if status == "healthy" else 1), body


def fill(pipeline: Pipeline, queue_url: str, n: int) -> None:
    """`n` messages on the queue, ten to a call."""
    for start in range(0, n, 10):
        pipeline.sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": "{}"} for i in range(start, min(n, start + 10))],
        )


def publish_age(queue_name: str, age_s: int) -> None:
    """AWS/SQS ApproximateAgeOfOldestMessage for the queue, as SQS publishes it (a minute ago)."""
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": queue_name}],
                "Value": age_s,
                "Unit": "Seconds",
                "Timestamp": datetime.now(UTC) - timedelta(seconds=90),
            }
        ],
    )


def test_everything_below_every_threshold_is_healthy(pipeline: Pipeline) -> None:
    # Given a running worker, empty queues, no age datapoint and an org without dead letters
    healthy_worker(pipeline)
    # Then the answer is healthy, with no reason
    body = ask(pipeline)
    assert_health(body, "healthy")
    assert body["thresholds"] == {
        "dead_letter_unhealthy": 10,
        "oldest_age_degraded_s": 300,
        "oldest_age_unhealthy_s": 900,
        "backlog_degraded": 1000,
    }


@pytest.mark.parametrize(("depth", "status"), [(1, "degraded"), (9, "degraded"), (10, "unhealthy")])
def test_dead_letter_queue_depth(pipeline: Pipeline, depth: int, status: str) -> None:
    # Given a running worker and `depth` messages on the dead-letter queue
    healthy_worker(pipeline)
    fill(pipeline, pipeline.queues.dlq_url, depth)
    # Then 1..9 is degraded and 10 unhealthy
    body = ask(pipeline)
    assert body["dead_letter_queue"]["depth"] == depth
    assert_health(body, status)
    assert "in the dead-letter queue" in body["reasons"][0]


@pytest.mark.parametrize(
    ("age_s", "status"),
    [(299, "healthy"), (300, "degraded"), (899, "degraded"), (900, "unhealthy")],
)
def test_oldest_message_age(pipeline: Pipeline, age_s: int, status: str) -> None:
    # Given a running worker, and CloudWatch holding the webhook queue's
    # AWS/SQS ApproximateAgeOfOldestMessage of `age_s` (as SQS publishes it, a minute ago)
    healthy_worker(pipeline)
    publish_age(pipeline.queues.main_url.rsplit("/", 1)[-1], age_s)
    # Then under 5 min is healthy, from 5 min degraded, from 15 min unhealthy
    body = ask(pipeline)
    assert body["queue"]["oldest_message_age_s"] == age_s
    assert_health(body, status)


def test_the_age_is_read_for_the_queue_a_deployment_names_whatever_its_name_ends_with(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a webhook queue named as CloudFormation names one (stack, logical id, a random suffix
    # of capitals and digits: here ending in X), and CloudWatch holding its age of 15 minutes
    healthy_worker(pipeline)
    name = f"Slotguard-dev-WebhooksQueue4F1E4A6B-{uuid.uuid4().hex[:11].upper()}X"
    url = pipeline.sqs.create_queue(QueueName=name)["QueueUrl"]
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", url)
    publish_age(name, 900)
    # Then queue-health reads that queue's age, whole name and all: unhealthy
    body = ask(pipeline)
    assert body["queue"]["oldest_message_age_s"] == 900
    assert_health(body, "unhealthy")


def test_messages_waiting(pipeline: Pipeline) -> None:
    # Given a running worker and 999 messages waiting on the webhook queue
    healthy_worker(pipeline)
    fill(pipeline, pipeline.queues.main_url, 999)
    # Then the answer is healthy
    body = ask(pipeline)
    assert body["queue"]["waiting"] == 999
    assert_health(body, "healthy")
    # When one more arrives, Then 1000 waiting is degraded
    pipeline.sqs.send_message(QueueUrl=pipeline.queues.main_url, MessageBody="{}")
    body = ask(pipeline)
    assert body["queue"]["waiting"] == 1000
    assert_health(body, "degraded")
    assert body["reasons"] == ["1000 messages waiting"]


@pytest.mark.parametrize(
    ("crossed", "status", "admins_reason", "members_reason"),
    [
        (
            "dead_letters:10",
            "unhealthy",
            "10 messages in the dead-letter queue",
            "the dead-letter queue is filling up",
        ),
        (
            "dead_letters:2",
            "degraded",
            "2 messages in the dead-letter queue",
            "messages in the dead-letter queue",
        ),
        ("age:300", "degraded", "oldest message is 300s old", "webhooks wait in the queue"),
        ("age:900", "unhealthy", "oldest message is 900s old", "webhooks wait in the queue"),
        ("waiting:1000", "degraded", "1000 messages waiting", "the queue is backed up"),
    ],
)
def test_a_member_is_told_each_threshold_crossed_without_the_shared_counts(
    pipeline: Pipeline, crossed: str, status: str, admins_reason: str, members_reason: str
) -> None:
    # Given a running worker, and one shared threshold crossed (the queues serve every org)
    healthy_worker(pipeline)
    what, _, n = crossed.partition(":")
    if what == "dead_letters":
        fill(pipeline, pipeline.queues.dlq_url, int(n))
    elif what == "age":
        publish_age(pipeline.queues.main_url.rsplit("/", 1)[-1], int(n))
    else:
        fill(pipeline, pipeline.queues.main_url, int(n))
    # When an admin and a member of an org ask
    org_id = str(uuid.uuid4())
    admin, member = ask(pipeline, org_id), ask(pipeline, org_id, admin=False)
    # Then both get the same status; the admin's reason gives the count, the member's names none
    assert (admin["status"], admin["reasons"]) == (status, [admins_reason])
    assert (member["status"], member["reasons"]) == (status, [members_reason])
    assert member["queue"] is None and member["dead_letter_queue"] is None


def test_a_worker_whose_state_is_not_said_is_unknown_and_degraded(pipeline: Pipeline) -> None:
    # Given the local poller's state file, fresh, saying neither the state nor a last result
    assert pipeline.state_file is not None
    pipeline.state_file.write_text(json.dumps({"updated_at": time.time()}))
    # Then the worker is Unknown, and the answer degraded saying it could not be read
    body = ask(pipeline)
    assert body["worker"]["state"] == "Unknown"
    assert (body["status"], body["reasons"]) == ("degraded", ["worker state unknown (unreadable)"])


@pytest.mark.parametrize(
    ("dead", "status", "reasons"),
    [
        (0, "healthy", []),
        (1, "degraded", ["1 of this org's deliveries is dead-lettered"]),
        (2, "degraded", ["2 of this org's deliveries are dead-lettered"]),
    ],
)
def test_the_orgs_dead_letters(
    pipeline: Pipeline, admin_conn: Any, dead: int, status: str, reasons: list[str]
) -> None:
    # Given a running worker, an org with `dead` dead-lettered deliveries and a completed one, and
    # another org with dead letters (not this org's health)
    healthy_worker(pipeline)
    org_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    seed(admin_conn, org_id, "appointment.book", "completed", ms=5)
    seed(admin_conn, other, "appointment.book", "dead_letter", attempts=3, error="boom")
    for _ in range(dead):
        seed(admin_conn, org_id, "appointment.book", "dead_letter", attempts=3, error="boom")
    # Then none is healthy, and any is degraded saying how many (to its admin and its members)
    for admin in (True, False):
        body = ask(pipeline, org_id, admin=admin)
        assert body["org"]["dead_letter"] == dead
        assert (body["status"], body["reasons"]) == (status, reasons)


def test_the_worker_state_read_from_the_lambda_api(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the processor's event source mapping on the webhook queue, in Lambda's API (moto's)
    suffix = uuid.uuid4().hex[:8]
    create_moto_function(f"webhook-processor-{suffix}")
    lam = boto3.client("lambda")
    queue_arn = pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.queues.main_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    mapping = lam.create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=f"webhook-processor-{suffix}", BatchSize=10, Enabled=True
    )["UUID"]
    monkeypatch.setenv("WORKER_STATE_SOURCE", f"lambda:{mapping}")
    # When it is enabled, Then the answer is healthy, the worker read from Lambda
    body = ask(pipeline)
    assert (body["worker"]["state"], body["worker"]["source"], body["worker"]["batch_size"]) == (
        "Enabled",
        "lambda",
        10,
    )
    assert_health(body, "healthy")
    # When it is disabled, Then the answer is unhealthy
    lam.update_event_source_mapping(UUID=mapping, Enabled=False)
    body = ask(pipeline)
    assert body["worker"]["state"] == "Disabled"
    assert_health(body, "unhealthy")
    assert body["reasons"] == ["worker state is Disabled"]


@pytest.mark.parametrize(("age_s", "status"), [(20, "healthy"), (40, "unhealthy")])
def test_the_local_pollers_state_file_goes_stale(pipeline: Pipeline, age_s: int, status: str) -> None:
    # Given the local poller's state file, Enabled, last written `age_s` ago (it rewrites it every
    # few seconds; one over 30 s old means the poller stopped)
    assert pipeline.state_file is not None
    healthy_worker(pipeline)
    state = json.loads(pipeline.state_file.read_text())
    pipeline.state_file.write_text(json.dumps({**state, "updated_at": time.time() - age_s}))
    # Then a fresh file is a running worker and a stale one a stopped worker
    body = ask(pipeline)
    assert body["worker"]["state"] == ("Enabled" if status == "healthy" else "Unavailable")
    assert_health(body, status)


def test_the_orgs_unfinished_deliveries_and_the_age_of_the_oldest(
    pipeline: Pipeline, admin_conn: Any
) -> None:
    # Given an org with deliveries pending (made 3 and 12 minutes ago), processing (7), failed (20)
    # and completed and dead-lettered ones older still (finished: not counted as waiting)
    healthy_worker(pipeline)
    org_id = str(uuid.uuid4())
    for status, age_min in [("pending", 3), ("pending", 12), ("processing", 7), ("failed", 20)]:
        seed(admin_conn, org_id, "appointment.book", status, age_min=age_min, error="busy")
    seed(admin_conn, org_id, "appointment.book", "completed", ms=5, age_min=60)
    seed(admin_conn, org_id, "appointment.book", "dead_letter", attempts=3, age_min=90, error="boom")
    # When its admin asks for queue health
    org = ask(pipeline, org_id)["org"]
    # Then each unfinished status is counted, and the oldest unfinished is the failed one, 20 min old
    assert {k: org[k] for k in ("pending", "processing", "failed", "dead_letter")} == {
        "pending": 2,
        "processing": 1,
        "failed": 1,
        "dead_letter": 1,
    }
    assert 20 * 60 <= org["oldest_unfinished_age_s"] < 20 * 60 + 30
    # And an org with nothing unfinished has no such age
    assert ask(pipeline, str(uuid.uuid4()))["org"]["oldest_unfinished_age_s"] is None


def test_an_oldest_message_age_cloudwatch_cannot_give_is_degraded_saying_so(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    # Given a running worker, empty queues, and CloudWatch unreachable (a port nobody serves)
    healthy_worker(pipeline)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", f"http://127.0.0.1:{closed_port}")
    # When queue health is asked for
    body = ask(pipeline)
    # Then it is degraded, saying the age is unknown and why, instead of healthy on no age
    assert (body["status"], body["reasons"]) == (
        "degraded",
        ["oldest message age unknown (EndpointConnectionError)"],
    )
    assert body["queue"]["oldest_message_age_s"] is None
    # And the log says so for the operator
    [warning] = log_records(caplog, "the queue's oldest message age could not be read")
    assert (warning.levelname, warning.error) == ("WARNING", "EndpointConnectionError")
