"""The receiver: Standard Webhooks signatures, the same 401 for every rejection, and nothing
enqueued unless the webhook was accepted. SQS and Secrets Manager are moto's server."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import log_records, signed_headers
from tests.webhook_support import Pipeline

BODY = json.dumps({"type": "appointment.book", "timestamp": "2030-01-01T00:00:00Z", "data": {}})
REJECTED = {"error": {"code": "unauthorized", "message": "the webhook could not be verified", "details": {}}}


def queued(p: Pipeline) -> list[dict[str, Any]]:
    answer = p.sqs.receive_message(
        QueueUrl=p.queues.main_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
    )
    return answer.get("Messages", [])


def test_valid_webhook_is_queued_with_its_identity(pipeline: Pipeline) -> None:
    # Given an org with a secret and a correctly signed webhook
    org_id, secret = pipeline.new_org()
    # When it is posted
    status, body = pipeline.post(org_id, BODY, signed_headers(secret, "msg_1", BODY))
    # Then it is accepted and on the queue, verbatim, with org, id and type as attributes
    assert status == 202
    assert body == {"id": "msg_1", "status": "queued"}
    [message] = queued(pipeline)
    assert message["Body"] == BODY
    attrs = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attrs == {"org_id": org_id, "webhook_id": "msg_1", "event_type": "appointment.book"}


def _tamper(headers: dict[str, str], **changes: str) -> dict[str, str]:
    return {**headers, **changes}


@pytest.mark.parametrize(
    "case",
    [
        "wrong_secret",
        "tampered_body",
        "tampered_id",
        "tampered_timestamp",
        "stale",
        "future",
        "no_id",
        "no_timestamp",
        "no_signature",
        "garbage_signature",
        "v2_only",
        "unknown_org",
        "not_a_uuid_org",
    ],
)
def test_rejections_are_401_alike_and_enqueue_nothing(pipeline: Pipeline, case: str) -> None:
    org_id, secret = pipeline.new_org()
    _, other_secret = pipeline.new_org()
    good = signed_headers(secret, "msg_x", BODY)
    now = datetime.now(UTC)
    target, body, headers = org_id, BODY, good
    if case == "wrong_secret":
        headers = signed_headers(other_secret, "msg_x", BODY)
    elif case == "tampered_body":
        body = BODY.replace("book", "cancel")
    elif case == "tampered_id":
        headers = _tamper(good, **{"webhook-id": "msg_y"})
    elif case == "tampered_timestamp":
        headers = _tamper(good, **{"webhook-timestamp": str(int(now.timestamp()) + 1)})
    elif case == "stale":
        headers = signed_headers(secret, "msg_x", BODY, now - timedelta(minutes=5, seconds=30))
    elif case == "future":
        headers = signed_headers(secret, "msg_x", BODY, now + timedelta(minutes=5, seconds=30))
    elif case.startswith("no_"):
        headers = {k: v for k, v in good.items() if k != f"webhook-{case[3:]}"}
    elif case == "garbage_signature":
        headers = _tamper(good, **{"webhook-signature": "this-is-not-a-signature"})
    elif case == "v2_only":
        headers = _tamper(good, **{"webhook-signature": good["webhook-signature"].replace("v1,", "v2,")})
    elif case == "unknown_org":
        target = str(uuid.uuid4())
    elif case == "not_a_uuid_org":
        target = "not-a-uuid"
    status, answer = pipeline.post(target, body, headers)
    assert status == 401
    assert answer == REJECTED
    assert pipeline.queues.depth(pipeline.sqs) == 0


def test_within_tolerance_is_accepted(pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    at = datetime.now(UTC) - timedelta(minutes=4, seconds=30)
    assert pipeline.post(org_id, BODY, signed_headers(secret, "msg_old", BODY, at))[0] == 202


def test_two_signatures_one_valid_is_accepted(pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    _, other = pipeline.new_org()
    good = signed_headers(secret, "msg_2", BODY)
    bad = signed_headers(other, "msg_2", BODY)
    both = _tamper(good, **{"webhook-signature": f"{bad['webhook-signature']} {good['webhook-signature']}"})
    assert pipeline.post(org_id, BODY, both)[0] == 202


def test_rotated_secrets_old_and_new_valid_until_the_old_is_dropped(pipeline: Pipeline) -> None:
    # Given an org whose secret is rotated (the previous one stays active)
    org_id, first = pipeline.new_org()
    second = pipeline.store.rotate(org_id, keep_previous=1)
    # Then webhooks signed with either are accepted
    assert pipeline.post(org_id, BODY, signed_headers(first, "r1", BODY))[0] == 202
    assert pipeline.post(org_id, BODY, signed_headers(second, "r2", BODY))[0] == 202
    # When it is rotated again, keeping only the previous one
    third = pipeline.store.rotate(org_id, keep_previous=1)
    # Then the oldest is refused, the two newest accepted
    assert pipeline.post(org_id, BODY, signed_headers(first, "r3", BODY))[0] == 401
    assert pipeline.post(org_id, BODY, signed_headers(second, "r4", BODY))[0] == 202
    assert pipeline.post(org_id, BODY, signed_headers(third, "r5", BODY))[0] == 202


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "the body is not valid UTF-8 JSON"),
        ('\ufeff{"type": "x"}', "the body is not valid UTF-8 JSON"),
        ('{"type": "x", "n": NaN}', "the body is not valid UTF-8 JSON"),
        ("[1, 2]", "the payload needs a string 'type'"),
        ('{"data": {}}', "the payload needs a string 'type'"),
        ('{"type": ""}', "the payload needs a string 'type'"),
        ('{"type": 7}', "the payload needs a string 'type'"),
    ],
    ids=["not-json", "bom", "nan", "array", "no-type", "blank-type", "number-type"],
)
def test_signed_but_malformed_payload_is_400_saying_what_is_wrong(
    pipeline: Pipeline, body: str, message: str
) -> None:
    # Given a correctly signed webhook whose body is not JSON, or not a payload with a type
    org_id, secret = pipeline.new_org()
    # When it is posted, Then it is a 400 saying which, and nothing is queued
    status, answer = pipeline.post(org_id, body, signed_headers(secret, "msg_bad", body))
    assert status == 400
    assert answer == {"error": {"code": "bad_request", "message": message, "details": {}}}
    assert pipeline.queues.depth(pipeline.sqs) == 0


def test_a_type_of_200_characters_is_queued_and_one_of_201_is_400(pipeline: Pipeline) -> None:
    # Given webhooks whose type is 200 characters long, and 201
    org_id, secret = pipeline.new_org()
    longest, over = (json.dumps({"type": "t" * n, "data": {}}) for n in (200, 201))
    # When each is posted, Then the first is queued with its type, and the second refused, saying why
    assert pipeline.post(org_id, longest, signed_headers(secret, "type_200", longest)) == (
        202,
        {"id": "type_200", "status": "queued"},
    )
    [message] = queued(pipeline)
    assert message["MessageAttributes"]["event_type"]["StringValue"] == "t" * 200
    assert pipeline.post(org_id, over, signed_headers(secret, "type_201", over)) == (
        400,
        {
            "error": {
                "code": "bad_request",
                "message": "the payload's 'type' is 201 characters, over the 200-character limit",
                "details": {"max_chars": 200, "chars": 201},
            }
        },
    )
    assert pipeline.queues.depth(pipeline.sqs) == 1  # the first only (counted visible or not)


def test_over_256_kib_is_413_and_exactly_256_kib_is_accepted(pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    prefix = '{"type": "note", "data": "'
    exact = prefix + "x" * (256 * 1024 - len(prefix) - 2) + '"}'
    assert len(exact.encode()) == 256 * 1024
    assert pipeline.post(org_id, exact, signed_headers(secret, "big_ok", exact))[0] == 202
    over = exact[:-2] + 'x"}'
    status, answer = pipeline.post(org_id, over, signed_headers(secret, "big_no", over))
    assert (status, answer) == (
        413,
        {
            "error": {
                "code": "payload_too_large",
                "message": "the body exceeds 262144 bytes",
                "details": {"max_bytes": 256 * 1024},
            }
        },
    )
    assert pipeline.queues.depth(pipeline.sqs) == 1


class CallCounter:
    """Counts the Secrets Manager requests a boto3 client really sends (to moto's server)."""

    def __init__(self, client: Any) -> None:
        self.calls = 0
        client.meta.events.register("before-send.secrets-manager.GetSecretValue", self._count)

    def _count(self, **_: Any) -> None:
        self.calls += 1


def test_unknown_orgs_are_cached_negatively_for_a_short_time(pipeline: Pipeline) -> None:
    import boto3

    from slotguard.aws.secrets import WebhookSecretStore

    now = [0.0]
    sm = boto3.client("secretsmanager")
    counter = CallCounter(sm)
    store = WebhookSecretStore(
        pipeline.secret_prefix, max_age_s=0, unknown_ttl_s=30, sm=sm, clock=lambda: now[0]
    )
    junk = str(uuid.uuid4())
    # Given junk traffic for an org id that has no secret
    # When it asks 50 times within the negative TTL
    answers = [store.active_secrets(junk) for _ in range(50)]
    # Then Secrets Manager is asked once
    assert answers == [None] * 50
    assert counter.calls == 1
    # And once the TTL is over it is asked again (an org created meanwhile is found)
    org_id, _ = pipeline.new_org()
    now[0] += 31
    assert store.active_secrets(junk) is None
    assert counter.calls == 2
    # And known orgs are never cached negatively
    assert store.active_secrets(org_id)
    assert store.active_secrets(org_id)
    assert counter.calls == 4  # max_age_s=0: no positive cache here


def test_junk_webhooks_for_unknown_orgs_are_401_without_a_secrets_call_each(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slotguard_local.events import LambdaContext, http_api_event
    from slotguard_local.functions import load_function

    monkeypatch.setenv("WEBHOOK_UNKNOWN_ORG_CACHE_S", "60")
    receiver = load_function("webhook_receiver")
    counter = CallCounter(receiver.receiver._secrets._sm)
    junk = str(uuid.uuid4())
    statuses = []
    for i in range(20):
        event = http_api_event(
            "POST",
            f"/webhooks/{junk}",
            route_key="POST /webhooks/{org_id}",
            path_parameters={"org_id": junk},
            headers=signed_headers("whsec_" + "A" * 44, f"msg_{i}", BODY),
            body=BODY,
        )
        statuses.append(receiver.lambda_handler(event, LambdaContext())["statusCode"])
    assert statuses == [401] * 20
    assert counter.calls == 1


@pytest.mark.parametrize(
    "header",
    [
        "junk {good}",  # an entry with no comma
        "{good}  v1,AAAA",  # a double space (an empty entry) and a short signature
        "v1,!!notbase64!! {good}",  # an entry whose signature is not base64
        "v1,a,b {good}",  # an entry with two commas
        "{good} v2,AAAA ,",  # another version, and a lone comma
        "\t{good}\t",  # surrounding whitespace
    ],
)
def test_a_malformed_entry_does_not_void_a_valid_signature_beside_it(pipeline: Pipeline, header: str) -> None:
    # Given a webhook-signature header carrying one valid v1 signature among entries that do not parse
    # (Standard Webhooks: space-separated entries, each parsed on its own)
    org_id, secret = pipeline.new_org()
    good = signed_headers(secret, "msg_mixed", BODY)
    headers = _tamper(good, **{"webhook-signature": header.format(good=good["webhook-signature"])})
    # When it is posted
    status, answer = pipeline.post(org_id, BODY, headers)
    # Then the valid signature is found and the webhook accepted
    assert status == 202, answer
    assert len(queued(pipeline)) == 1


@pytest.mark.parametrize("header", ["junk", "v1,!!", "  ", "v1,a,b v2,AAAA"])
def test_a_header_of_only_unparseable_entries_is_401(pipeline: Pipeline, header: str) -> None:
    # Given a signature header none of whose entries parses as a v1 signature
    org_id, secret = pipeline.new_org()
    headers = _tamper(signed_headers(secret, "msg_junk", BODY), **{"webhook-signature": header})
    # When it is posted, Then it is refused like any other bad signature
    status, answer = pipeline.post(org_id, BODY, headers)
    assert (status, answer) == (401, REJECTED)
    assert pipeline.queues.depth(pipeline.sqs) == 0


def test_a_secret_rotated_in_is_accepted_at_once_though_the_old_list_is_cached(
    pipeline: Pipeline, monkeypatch: Any
) -> None:
    from slotguard_local.functions import load_function

    # Given a receiver caching an org's secrets for 60 s, its cache holding the first secret
    monkeypatch.setenv("WEBHOOK_SECRET_CACHE_S", "60")
    pipeline.receiver = load_function("webhook_receiver")
    org_id, first = pipeline.new_org()
    assert pipeline.post(org_id, BODY, signed_headers(first, "msg_before", BODY))[0] == 202
    # When the org's secret is rotated and the sender signs with the new one at once
    second = pipeline.store.rotate(org_id)
    status, _ = pipeline.post(org_id, BODY, signed_headers(second, "msg_after", BODY))
    # Then it is accepted: a signature no cached secret verifies re-reads the org's secrets
    assert status == 202
    # And the previous secret, kept active by the rotation, is still accepted
    assert pipeline.post(org_id, BODY, signed_headers(first, "msg_old", BODY))[0] == 202


def test_forged_signatures_re_read_an_orgs_secrets_at_most_once_per_interval(pipeline: Pipeline) -> None:
    import boto3

    from slotguard.aws.secrets import WebhookSecretStore

    # Given a store caching for 60 s whose Secrets Manager reads are counted
    reads: list[str] = []
    sm = boto3.client("secretsmanager")
    sm.meta.events.register("before-call.secrets-manager.GetSecretValue", lambda **kw: reads.append("read"))
    store = WebhookSecretStore(pipeline.secret_prefix, max_age_s=60, sm=sm)
    org_id, _ = pipeline.new_org()
    assert store.active_secrets(org_id)
    assert len(reads) == 1
    # When 50 signatures no secret makes ask for a fresh read within the interval
    fresh = [store.refreshed_secrets(org_id) for _ in range(50)]
    # Then the secrets were read again once, and the other asks were refused without a read
    assert len(reads) == 2
    assert fresh[0] and fresh[1:] == [None] * 49


def test_a_payload_larger_as_stored_than_the_body_limit_is_400(pipeline: Pipeline) -> None:
    # Given a signed body of 240 KB holding 40,000 numbers 1e308, which PostgreSQL's jsonb writes
    # out in full (309 digits each: 12 MB as stored, a 13 MB redrive message)
    org_id, secret = pipeline.new_org()
    body = '{"type":"note","data":[' + ",".join(["1e308"] * 40_000) + "]}"
    assert len(body) < 256 * 1024
    # When it is posted
    status, answer = pipeline.post(org_id, body, signed_headers(secret, "numbers", body))
    # Then it is refused for good, saying why, and nothing is queued
    stored = len('{"type":"note","data":[' + ",".join(["1" + "0" * 308] * 40_000) + "]}")
    assert status == 400, answer
    assert answer == {
        "error": {
            "code": "bad_request",
            "message": f"the payload is {stored} bytes as stored (numbers written in full: 1e300 is 301"
            " digits), over the 262144-byte limit",
            "details": {"max_bytes": 256 * 1024, "stored_bytes": stored},
        }
    }
    assert pipeline.queues.depth(pipeline.sqs) == 0
    # And fewer such numbers, within the limit as stored, are accepted as before
    small = '{"type":"note","data":[' + ",".join(["1e30"] * 1_000) + "]}"
    assert pipeline.post(org_id, small, signed_headers(secret, "fewer", small))[0] == 202
    # And a body of non-ASCII text near the limit is accepted (stored as UTF-8, as sent)
    text = json.dumps({"type": "note", "data": "é" * 120_000}, ensure_ascii=False)
    assert len(text.encode()) < 256 * 1024
    assert pipeline.post(org_id, text, signed_headers(secret, "accents", text))[0] == 202


def test_a_payload_exactly_the_limit_as_stored_is_queued_and_a_byte_over_is_400(pipeline: Pipeline) -> None:
    # Given two compact bodies of exactly 256 KiB: one a string (as long stored as sent), the
    # other with the number 1e-3 in it, which is stored as 0.001, one byte longer than sent
    org_id, secret = pipeline.new_org()

    def body(prefix: str) -> str:
        return prefix + "x" * (256 * 1024 - len(prefix) - 2) + '"}'

    exact, over = body('{"type":"note","data":"'), body('{"type":"note","n":1e-3,"data":"')
    assert len(exact.encode()) == len(over.encode()) == 256 * 1024
    # When each is posted
    # Then the one of exactly the limit as stored is queued
    assert pipeline.post(org_id, exact, signed_headers(secret, "stored_exact", exact)) == (
        202,
        {"id": "stored_exact", "status": "queued"},
    )
    # And the one a byte over it as stored is refused for good, saying by how much
    assert pipeline.post(org_id, over, signed_headers(secret, "stored_over", over)) == (
        400,
        {
            "error": {
                "code": "bad_request",
                "message": f"the payload is {256 * 1024 + 1} bytes as stored (numbers written in full: 1e300"
                " is 301 digits), over the 262144-byte limit",
                "details": {"max_bytes": 256 * 1024, "stored_bytes": 256 * 1024 + 1},
            }
        },
    )
    assert pipeline.queues.depth(pipeline.sqs) == 1


def test_an_org_id_in_the_path_in_another_spelling_than_the_canonical_one_is_401(pipeline: Pipeline) -> None:
    # Given an org with a secret, and a correctly signed webhook
    org_id, secret = pipeline.new_org()
    # When it is posted to the org's path in upper case (the JWT claim takes only the canonical form)
    status, body = pipeline.post(org_id.upper(), BODY, signed_headers(secret, "msg_upper", BODY))
    # Then it is refused like an unknown org, and nothing is queued
    assert (status, body) == (401, REJECTED)
    assert queued(pipeline) == []


def _post_raw(receiver: Any, org_id: str, body: str, headers: dict[str, str]) -> dict[str, Any]:
    """The receiver's whole answer (status, headers, body) to a real payload-2.0 event."""
    from slotguard_local.events import LambdaContext, http_api_event

    event = http_api_event(
        "POST",
        f"/webhooks/{org_id}",
        route_key="POST /webhooks/{org_id}",
        path_parameters={"org_id": org_id},
        headers=headers,
        body=body,
    )
    out: dict[str, Any] = receiver.lambda_handler(event, LambdaContext(function_name="webhook_receiver"))
    return out


def _assert_retry_later(out: dict[str, Any], message: str) -> None:
    assert out["statusCode"] == 503, out
    error = json.loads(out["body"])["error"]
    assert (error["code"], error["message"]) == ("upstream_unavailable", message)
    assert int(out["headers"]["Retry-After"]) >= 1


def logged(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    """The function's log records with this message: their level and the extra keys the receiver
    logs (`error`, `org_id`)."""
    return [
        {"level": r.levelname, **{k: v for k, v in vars(r).items() if k in ("error", "org_id")}}
        for r in caplog.records
        if r.getMessage() == message
    ]


def _emitted(out: str) -> set[str]:
    names: set[str] = set()
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
                names.update(m["Name"] for m in directive["Metrics"])
    return names


def test_a_queue_sqs_cannot_find_is_503_with_retry_after_and_the_retry_is_queued_once(
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from slotguard_local.functions import load_function

    # Given a receiver whose queue SQS no longer has (deleted under it)
    org_id, secret = pipeline.new_org()
    name = f"receiver-{uuid.uuid4().hex[:10]}"
    url = pipeline.sqs.create_queue(QueueName=name)["QueueUrl"]
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", url)
    receiver = load_function("webhook_receiver")
    pipeline.sqs.delete_queue(QueueUrl=url)
    capsys.readouterr()
    # When a correctly signed webhook is posted
    out = _post_raw(receiver, org_id, BODY, signed_headers(secret, "msg_sqs_down", BODY))
    # Then the sender is told to retry (503 upstream_unavailable, Retry-After), not that it was taken
    _assert_retry_later(out, "the webhook could not be queued, retry shortly")
    assert "WebhookReceived" not in _emitted(capsys.readouterr().out)
    # And the operator's log has SQS's error, with its traceback
    [error] = log_records(caplog, "enqueue failed")
    assert error.levelname == "ERROR"
    assert error.exc_info is not None
    assert "NonExistentQueue" in str(error.exc_info[1])
    # When SQS has the queue again and the sender retries the same webhook
    assert pipeline.sqs.create_queue(QueueName=name)["QueueUrl"] == url
    again = _post_raw(receiver, org_id, BODY, signed_headers(secret, "msg_sqs_down", BODY))
    # Then it is accepted and on the queue once
    assert again["statusCode"] == 202, again
    [message] = pipeline.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert message["MessageAttributes"]["webhook_id"]["StringValue"] == "msg_sqs_down"
    assert message["Body"] == BODY


def test_an_unreachable_secrets_manager_is_503_with_retry_after_and_nothing_is_queued(
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    closed_port: int,
) -> None:
    from slotguard_local.functions import load_function

    # Given an org with a secret, and a fresh receiver container whose Secrets Manager endpoint
    # refuses connections (a port nothing listens on); SQS is reachable
    org_id, secret = pipeline.new_org()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{closed_port}")
    receiver = load_function("webhook_receiver")
    capsys.readouterr()
    # When a correctly signed webhook is posted
    out = _post_raw(receiver, org_id, BODY, signed_headers(secret, "msg_sm_down", BODY))
    # Then the sender is told to retry (503, Retry-After), not refused as unknown (401), and
    # nothing is queued or counted as received or rejected
    _assert_retry_later(out, "signature secrets are unavailable, retry shortly")
    assert pipeline.queues.depth(pipeline.sqs) == 0
    printed = capsys.readouterr().out
    assert not {"WebhookReceived", "WebhookRejected"} & _emitted(printed)
    # And the cause is in the log for the operator (the sender's answer does not say it)
    [warning] = logged(caplog, "the org's webhook secrets could not be read")
    assert (warning["level"], warning["org_id"]) == ("WARNING", org_id)
    assert f"http://127.0.0.1:{closed_port}" in warning["error"], warning
    # When Secrets Manager answers again (a fresh container) and the sender retries
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER")
    pipeline.receiver = load_function("webhook_receiver")
    status, _ = pipeline.post(org_id, BODY, signed_headers(secret, "msg_sm_down", BODY))
    # Then it is accepted and queued once
    assert status == 202
    assert [m["MessageAttributes"]["webhook_id"]["StringValue"] for m in queued(pipeline)] == ["msg_sm_down"]


def test_cache_on_a_revoked_secret_is_refused_once_the_cache_refreshes_an_expired_one_at_its_expiry(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from slotguard_local.functions import load_function

    # Given a receiver caching an org's secrets for 2 s, and a rotation whose previous secret is
    # kept (as `rotate-webhook-secret` does by default: for 24 h)
    cache_s = 2
    monkeypatch.setenv("WEBHOOK_SECRET_CACHE_S", str(cache_s))
    pipeline.receiver = load_function("webhook_receiver")
    org_id, first = pipeline.new_org()
    assert pipeline.post(org_id, BODY, signed_headers(first, "c1", BODY))[0] == 202
    second = pipeline.store.rotate(org_id, keep_previous=1)
    # Then the new one is accepted at once and the old one during the overlap
    assert pipeline.post(org_id, BODY, signed_headers(second, "c2", BODY))[0] == 202
    assert pipeline.post(org_id, BODY, signed_headers(first, "c3", BODY))[0] == 202
    # When the org rotates again revoking every previous secret (`--revoke-previous`), and the
    # receiver's cache bound passes
    third = pipeline.store.rotate(org_id, keep_previous=0)
    time.sleep(cache_s + 0.2)
    # Then both old secrets are refused, and the newest accepted
    assert pipeline.post(org_id, BODY, signed_headers(first, "c4", BODY)) == (401, REJECTED)
    assert pipeline.post(org_id, BODY, signed_headers(second, "c5", BODY)) == (401, REJECTED)
    assert pipeline.post(org_id, BODY, signed_headers(third, "c6", BODY))[0] == 202

    # Given a receiver caching for 60 s, and a rotation that keeps the previous secret 2 s more
    monkeypatch.setenv("WEBHOOK_SECRET_CACHE_S", "60")
    pipeline.receiver = load_function("webhook_receiver")
    fourth = pipeline.store.rotate(org_id, keep_previous=1, previous_valid_for=timedelta(seconds=2))
    expires = datetime.now(UTC) + timedelta(seconds=2)
    assert pipeline.post(org_id, BODY, signed_headers(third, "c7", BODY))[0] == 202  # cached from here on
    assert pipeline.post(org_id, BODY, signed_headers(fourth, "c8", BODY))[0] == 202
    # When its expiry passes, the cached list still holding it
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
    # Then it is refused at once, and the new one accepted
    assert pipeline.post(org_id, BODY, signed_headers(third, "c9", BODY)) == (401, REJECTED)
    assert pipeline.post(org_id, BODY, signed_headers(fourth, "c10", BODY))[0] == 202


def test_a_bad_signature_while_secrets_manager_is_down_is_still_refused_as_unverified(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    from slotguard_local.functions import load_function

    # Given a receiver caching secrets (as deployed) that has read an org's, after which Secrets
    # Manager goes away
    monkeypatch.setenv("WEBHOOK_SECRET_CACHE_S", "300")
    pipeline.receiver = load_function("webhook_receiver")
    org_id, secret = pipeline.new_org()
    assert pipeline.post(org_id, BODY, signed_headers(secret, "msg_before", BODY))[0] == 202

    attempts = []

    def unreachable(**_: Any) -> None:
        attempts.append(1)
        raise EndpointConnectionError(endpoint_url="https://secretsmanager.invalid")

    sm = pipeline.receiver.receiver._secrets._sm
    sm.meta.events.register("before-send.secrets-manager.GetSecretValue", unreachable)
    # When a webhook signed with another secret comes (the re-read a rotation would need fails)
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    status, answer = pipeline.post(org_id, BODY, signed_headers(other, "msg_forged", BODY))
    # Then the secrets were read again (a rotation may have happened), that read failed, and the
    # webhook is refused as unverified, as when the re-read finds nothing new: the outage does not
    # turn a forged signature into "retry shortly"
    assert attempts, "no re-read of the org's secrets was attempted"
    assert (status, answer) == (401, REJECTED)
    # And a correctly signed one is still verified from the cached secrets, and queued
    assert pipeline.post(org_id, BODY, signed_headers(secret, "msg_after", BODY))[0] == 202
    assert [m["MessageAttributes"]["webhook_id"]["StringValue"] for m in queued(pipeline)] == [
        "msg_before",
        "msg_after",
    ]
