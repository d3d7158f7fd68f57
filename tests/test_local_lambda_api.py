"""The local stack's Lambda API records (slotguard_local.lambda_api): a mapping registered on a
queue in moto is read back as a deployment reads its own, and moto never runs it itself (the
local stack's pollers do what the mapping does)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from slotguard.aws.workers import EventSourceMappingState
from slotguard_local.functions import handler_path
from slotguard_local.lambda_api import register_queue_worker, worker_state_mode
from tests.conftest import make_queues


@pytest.fixture
def queue(aws: str) -> tuple[Any, str]:
    sqs = boto3.client("sqs")
    return sqs, make_queues(sqs, max_receive_count=3, visibility_timeout_s=2).main_url


def test_a_registered_queue_worker_reads_back_as_a_deployed_mapping(queue: tuple[Any, str]) -> None:
    # Given the processor registered on the queue, as the stack does with SLOTGUARD_WORKER_STATE=lambda
    sqs, url = queue
    name = f"slotguard-dev-webhook-processor-{uuid.uuid4().hex[:6]}"
    mapping = register_queue_worker(
        name,
        handler_path("webhook_processor"),
        url,
        batch_size=10,
        batching_window_s=1,
        maximum_concurrency=5,
    )
    # When queue-health's reader reads it, Then it has the mapping's settings and state
    state = EventSourceMappingState(mapping).read()
    assert (state.state, state.batch_size, state.maximum_concurrency, state.batching_window_s) == (
        "Enabled",
        10,
        5,
        1,
    )
    assert state.source == "lambda"
    # And the mapping is on that queue, for that function, with partial batch responses
    raw = boto3.client("lambda").get_event_source_mapping(UUID=mapping)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert raw["EventSourceArn"] == arn
    assert raw["FunctionArn"].endswith(f":function:{name}")
    assert raw["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_emulator_never_runs_a_mapping_itself_so_no_message_is_taken(queue: tuple[Any, str]) -> None:
    # Given an enabled mapping on the queue, of a function the emulator cannot run (no Docker)
    sqs, url = queue
    register_queue_worker(
        f"fn-{uuid.uuid4().hex[:8]}",
        handler_path("webhook_processor"),
        url,
        batch_size=10,
        batching_window_s=1,
        maximum_concurrency=2,
    )
    # When a message is sent
    sqs.send_message(QueueUrl=url, MessageBody="webhook")
    # Then the queue's own consumer receives it, first, with no receive counted before its own
    got = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"], WaitTimeSeconds=1)
    [message] = got["Messages"]
    assert message["Body"] == "webhook"
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"


@pytest.mark.parametrize(("value", "mode"), [("", "file"), ("file", "file"), (" Lambda ", "lambda")])
def test_the_worker_state_setting(monkeypatch: pytest.MonkeyPatch, value: str, mode: str) -> None:
    # Given SLOTGUARD_WORKER_STATE set to `value`, When read, Then it is `mode`
    monkeypatch.setenv("SLOTGUARD_WORKER_STATE", value)
    assert worker_state_mode() == mode


def test_another_worker_state_is_refused_naming_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTGUARD_WORKER_STATE", "poller")
    with pytest.raises(ValueError, match="must be file or lambda, not 'poller'"):
        worker_state_mode()
