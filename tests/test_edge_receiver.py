"""Per-tenant fairness on the public webhook route (issue 18), the receiver's side: behind the
edge (CloudFront and AWS WAF, tests/test_edge.py for the templates) the receiver refuses what did
not come through it. Run with a real payload-2.0 event and moto's Secrets Manager."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from tests.conftest import signed_headers
from tests.test_webhook_receiver import BODY, REJECTED, CallCounter, logged, queued
from tests.webhook_support import Pipeline


@pytest.fixture
def edge_secret(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> str:
    """A receiver deployed behind the edge: its secret in Secrets Manager (moto), its ARN set."""
    from slotguard_local.functions import load_function

    value = uuid.uuid4().hex + uuid.uuid4().hex
    arn = boto3.client("secretsmanager").create_secret(
        Name=f"edge-{uuid.uuid4().hex[:8]}", SecretString=value
    )["ARN"]
    monkeypatch.setenv("WEBHOOK_EDGE_SECRET_ARN", arn)
    pipeline.receiver = load_function("webhook_receiver")
    return value


def test_a_webhook_sent_to_the_origin_itself_is_refused_and_one_through_the_edge_is_queued(
    pipeline: Pipeline, edge_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an org and a correctly signed webhook
    org_id, secret = pipeline.new_org()
    headers = signed_headers(secret, "msg_edge", BODY)
    counter = CallCounter(pipeline.receiver.receiver._secrets._sm)
    capsys.readouterr()
    # When it is sent to the origin API's own URL (no edge header), or with a wrong one
    no_header = pipeline.post(org_id, BODY, headers)
    wrong = pipeline.post(org_id, BODY, {**headers, "x-slotguard-edge": edge_secret[:-1] + "x"})
    # Then both are refused with the one 401 body every reason gets, before any org's secret is read
    assert no_header == (401, REJECTED)
    assert wrong == (401, REJECTED)
    assert counter.calls == 0
    assert queued(pipeline) == []
    # And counted as rejections for that reason
    reasons = [
        json.loads(line).get("reason")
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and "WebhookRejected" in line
    ]
    assert reasons == ["not_via_edge", "not_via_edge"]
    # When it comes through the edge (CloudFront adds the header)
    status, answer = pipeline.post(org_id, BODY, {**headers, "x-slotguard-edge": edge_secret})
    # Then it is verified and queued
    assert status == 202, answer
    assert len(queued(pipeline)) == 1


def test_junk_without_the_edge_header_costs_no_secrets_manager_read_each(
    pipeline: Pipeline, edge_secret: str
) -> None:
    sm = pipeline.receiver.receiver._edge._sm
    counter = CallCounter(sm)
    org_id, secret = pipeline.new_org()
    headers = {**signed_headers(secret, "msg_junk", BODY), "x-slotguard-edge": "guess"}
    # Given a receiver that has read the edge's secret once
    assert pipeline.post(org_id, BODY, {**headers, "x-slotguard-edge": edge_secret})[0] == 202
    reads = counter.calls
    # When 30 requests guess the header
    statuses = [pipeline.post(org_id, BODY, headers)[0] for _ in range(30)]
    # Then each is refused, and the secret was re-read at most once (a changed value, after a deploy)
    assert statuses == [401] * 30
    assert counter.calls - reads <= 2  # the edge's secret once, the org's secrets never


def test_the_edge_secret_unreadable_is_503_so_the_sender_retries(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from slotguard_local.functions import load_function

    # Given a receiver whose edge secret cannot be read (deleted)
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(Name=f"edge-{uuid.uuid4().hex[:8]}", SecretString="x" * 48)["ARN"]
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    monkeypatch.setenv("WEBHOOK_EDGE_SECRET_ARN", arn)
    pipeline.receiver = load_function("webhook_receiver")
    org_id, secret = pipeline.new_org()
    # When a webhook comes through the edge
    headers = {**signed_headers(secret, "msg_503", BODY), "x-slotguard-edge": "x" * 48}
    status, answer = pipeline.post(org_id, BODY, headers)
    # Then the sender is told to retry, and nothing was queued
    assert status == 503
    assert (answer["error"]["code"], answer["error"]["message"]) == (
        "upstream_unavailable",
        "signature secrets are unavailable, retry shortly",
    )
    assert queued(pipeline) == []
    # And the log tells the operator which secret and why (Secrets Manager's own words)
    [warning] = logged(caplog, "the edge's secret could not be read")
    assert warning["level"] == "WARNING"
    assert "ResourceNotFoundException" in warning["error"], warning


def test_a_changed_edge_secret_is_accepted_beside_the_previous_one_while_cloudfront_rolls_it_out(
    pipeline: Pipeline, edge_secret: str
) -> None:
    import boto3

    sm = boto3.client("secretsmanager")
    arn = pipeline.receiver.receiver._edge._secret_id
    org_id, secret = pipeline.new_org()

    def post(header: str, n: int) -> int:
        headers = {
            **signed_headers(secret, f"msg_rot_{n}_{uuid.uuid4().hex[:6]}", BODY),
            "x-slotguard-edge": header,
        }
        return pipeline.post(org_id, BODY, headers)[0]

    # Given a receiver that has read the edge secret (its clock ours)
    edge = pipeline.receiver.receiver._edge
    now = [1000.0]
    edge._clock = lambda: now[0]
    assert post(edge_secret, 0) == 202
    # When an operator puts a new value (docs/operations.md), before CloudFront sends it
    new = uuid.uuid4().hex + uuid.uuid4().hex
    sm.put_secret_value(SecretId=arn, SecretString=new)
    # Then what CloudFront still sends (now the previous version) is accepted
    assert post(edge_secret, 1) == 202
    # And the new value, once CloudFront sends it (a deploy later: minutes), is accepted too, read
    # again on the first mismatch past the re-read interval
    now[0] += edge.REFRESH_MIN_INTERVAL_S
    assert post(new, 2) == 202
    assert post(edge_secret, 3) == 202
    # And a value older than the previous one is refused once a third value is put
    newest = uuid.uuid4().hex + uuid.uuid4().hex
    sm.put_secret_value(SecretId=arn, SecretString=newest)
    now[0] += 300  # (its 5-minute cache past)
    assert post(newest, 4) == 202
    assert post(new, 5) == 202
    assert post(edge_secret, 6) == 401
