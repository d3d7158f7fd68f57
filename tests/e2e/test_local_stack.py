"""The local stack started as `make local` starts it, exercised over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import jwt
import psycopg
import pytest

from slotguard_local.moto import MotoServer
from tests.e2e.remote import RemoteStack, deployed, remote
from tests.e2e.stack_process import StackProcess, http, running_stack

pytestmark = pytest.mark.e2e
# `make smoke` (SLOTGUARD_API_URL set): these need the local stack's own process and files.
local_only = pytest.mark.skipif(
    remote(), reason="needs the local stack (make smoke runs against a deployment)"
)


def sign(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """The ten-line signer of the README (Standard Webhooks v1)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def post_webhook(
    api: str,
    org: dict[str, Any],
    event_type: str,
    data: Any,
    secret: str | None = None,
    webhook_id: str | None = None,
) -> tuple[int, Any]:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    body = json.dumps({"type": event_type, "timestamp": "2030-01-01T00:00:00Z", "data": data})
    now = int(time.time())
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret or org["webhook_secret"], webhook_id, now, body),
    }
    # make smoke against AWS: senders post to the stack's WebhookUrl (CloudFront and its web ACL in
    # front of the route), not to the API's URL
    edge = os.environ.get("SLOTGUARD_WEBHOOK_URL") if remote() else None
    url = f"{edge.rstrip('/')}/{org['org_id']}" if edge else f"{api}/webhooks/{org['org_id']}"
    return http("POST", url, raw=body.encode(), headers=headers)


def run_day(first: date) -> str:
    """The day a test books on: `first` on a fresh local stack; against a deployment (make smoke),
    which keeps earlier runs' rows, a day drawn per run among about 130 years from `first`, so a run
    never meets what an earlier one left (one that failed half-way included)."""
    return (first + timedelta(days=uuid.uuid4().int % 48_000 if remote() else 0)).isoformat()


def wait_for(check: Any, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    deployed = RemoteStack.from_env()
    if deployed is not None:
        yield deployed
        return
    with running_stack(tmp_path_factory.mktemp("local") / ".local") as running:
        yield running


@local_only
def test_stack_json_follows_the_contract(stack: StackProcess) -> None:
    info = stack.info
    assert info["api_url"] == f"http://127.0.0.1:{stack.port}"
    assert len(info["orgs"]) >= 2
    for org in info["orgs"]:
        assert set(org) == {"org_id", "token", "admin_token", "webhook_secret"}
        uuid.UUID(org["org_id"])
        claims = jwt.decode(org["token"], options={"verify_signature": False})
        assert claims["org_id"] == org["org_id"]
        assert claims["exp"] - time.time() >= 24 * 3600
        assert jwt.decode(org["admin_token"], options={"verify_signature": False})["role"] == "admin"
        assert org["webhook_secret"].startswith("whsec_")
    status, doc = http("GET", f"{info['api_url']}/openapi.json")
    assert status == 200
    assert "/appointments" in doc["paths"]


def test_booking_lifecycle_over_http(stack: StackProcess) -> None:
    api, org = stack.info["api_url"], stack.info["orgs"][0]
    token = org["token"]
    day = run_day(date(2031, 5, 1))
    body = {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": f"{day}T10:00:00+02:00",
        "duration_minutes": 60,
    }
    status, appt = http("POST", f"{api}/appointments", token=token, body=body)
    assert status == 201, appt
    assert http("POST", f"{api}/appointments", token=token, body=body)[0] == 409
    status, moved = http(
        "POST",
        f"{api}/appointments/{appt['id']}/reschedule",
        token=token,
        body={"scheduled_at": f"{day}T12:00:00+02:00"},
    )
    assert status == 200
    new_id = moved["appointment"]["id"]
    status, cancelled = http(
        "POST", f"{api}/appointments/{new_id}/cancel", token=token, body={"reason": "done"}
    )
    assert (status, cancelled["status"]) == (200, "cancelled")
    status, history = http("GET", f"{api}/appointments/{appt['id']}/history", token=token)
    assert [h["action"] for h in history["entries"]] == ["created", "rescheduled"]
    if len(stack.info["orgs"]) > 1:
        other = stack.info["orgs"][1]["token"]
        assert http("GET", f"{api}/appointments/{appt['id']}", token=other)[0] == 404
    status, avail = http(
        "GET", f"{api}/availability/check?start={day}T08%3A00%3A00Z&duration_minutes=30", token=token
    )
    assert (status, avail["available"]) == (200, True)


def test_signed_webhook_becomes_an_appointment_and_shows_in_metrics(stack: StackProcess) -> None:
    api, org = stack.info["api_url"], stack.info["orgs"][1 if not remote() else 0]
    day = run_day(date(2031, 6, 1))
    data = {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": f"{day}T09:00:00Z",
        "duration_minutes": 45,
    }
    status, answer = post_webhook(api, org, "appointment.book", data)
    assert status == 202
    assert answer["status"] == "queued"

    def booked() -> Any:
        _, page = http(
            "GET",
            f"{api}/appointments?from={day}T00%3A00%3A00Z&to={day}T23%3A59%3A00Z",
            token=org["token"],
        )
        return page["items"]

    def ours() -> Any:
        return [a for a in booked() if a["contact_id"] == data["contact_id"]]

    [appt] = wait_for(ours, timeout_s=60 if remote() else 20)
    assert appt["contact_id"] == data["contact_id"]
    # And the webhook's own delivery says so: completed, applied, in one attempt
    status, delivery = http(
        "GET", f"{api}/webhook-metrics/delivery?webhook_id={answer['id']}", token=org["token"]
    )
    assert status == 200, delivery
    assert (delivery["job_id"], delivery["status"], delivery["outcome"]) == (
        answer["id"],
        "completed",
        "applied",
    ), delivery
    assert [a["result"] for a in delivery["attempt_history"]] == ["completed"], delivery
    _, stats = http("GET", f"{api}/webhook-metrics/delivery-stats?range=1h", token=org["token"])
    assert stats["totals"]["completed"] >= 1
    _, health = http("GET", f"{api}/webhook-metrics/queue-health", token=org["token"])
    # (a deployment reads its worker from the event source mapping, in Lambda's API: `make smoke`
    # fails on a deployment whose metrics function cannot, e.g. for want of lambda:GetEventSourceMapping)
    assert health["worker"]["state"] == "Enabled", health
    # (a local stack answers from its poller's state file unless SLOTGUARD_WORKER_STATE=lambda,
    # which the smoke suite's stand-in sets: tests/e2e/test_smoke_mode.py)
    # ("lambda (last read; now <error>)" when Lambda's API throttled a read after a good one)
    source = health["worker"]["source"].split(" ")[0]
    sources = {"lambda"} if deployed() else {"lambda", "local-poller"} if remote() else {"local-poller"}
    assert source in sources, health
    assert (health["worker"]["batch_size"], health["worker"]["maximum_concurrency"]) == (10, 5), health
    # A bad signature is refused
    wrong = "whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode()
    assert post_webhook(api, org, "appointment.book", data, secret=wrong)[0] == 401


def _tampered(token: str, **claims: Any) -> str:
    """The token with its payload changed and its signature kept: what an attacker can make of a
    real token (works against any deployment: no key needed)."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    changed = base64.urlsafe_b64encode(json.dumps({**decoded, **claims}).encode()).rstrip(b"=").decode()
    return f"{header}.{changed}.{signature}"


@pytest.mark.parametrize(
    "case",
    [
        "none",
        "expired",
        "wrong_key",
        "wrong_audience",
        "wrong_issuer",
        "alg_none",
        "garbage",
        "tampered_org",
        "tampered_role",
        "tampered_expiry",
        "truncated_signature",
    ],
)
def test_bad_tokens_are_401_before_any_handler_runs(stack: StackProcess, case: str) -> None:
    api, org = stack.info["api_url"], stack.info["orgs"][0]
    good = jwt.decode(org["token"], options={"verify_signature": False})
    token: str | None
    if case == "none":
        token = None
    elif case == "expired":
        token = jwt.encode({**good, "exp": int(time.time()) - 60}, _dev_key(stack), algorithm="HS256")
    elif case == "wrong_key":
        token = jwt.encode(good, "not-the-key-" * 4, algorithm="HS256")
    elif case == "wrong_audience":
        token = jwt.encode({**good, "aud": "someone-else"}, _dev_key(stack), algorithm="HS256")
    elif case == "wrong_issuer":
        token = jwt.encode({**good, "iss": "https://evil.example"}, _dev_key(stack), algorithm="HS256")
    elif case == "alg_none":
        token = jwt.encode(good, None, algorithm="none")
    elif case == "tampered_org":
        token = _tampered(org["token"], org_id=str(uuid.uuid4()))
    elif case == "tampered_role":
        token = _tampered(org["token"], role="admin")
    elif case == "tampered_expiry":
        token = _tampered(org["token"], exp=int(time.time()) + 10 * 365 * 86400)
    elif case == "truncated_signature":
        token = org["token"][:-4]
    else:
        token = "not.a.jwt"
    status, body = http("GET", f"{api}/appointments", token=token)
    # The authorizer's answer, not a handler's error body
    assert (status, body) == (401, {"message": "Unauthorized"})


def _dev_key(stack: StackProcess) -> str:
    """The local stack's development signing key; in make smoke, that of the local stack the API URL
    is (its SLOTGUARD_HOME, default .local). A deployment's tokens are signed by its identity
    provider: those three cases (expired, wrong audience, wrong issuer) need a key only it has."""
    home = getattr(stack, "home", None)
    if home is None:
        home = Path(os.environ.get("SLOTGUARD_HOME", ".local"))
        try:
            local = json.loads((home / "stack.json").read_text())
        except (OSError, ValueError):
            local = {}
        if local.get("api_url", "").rstrip("/") != stack.info["api_url"]:
            pytest.skip("a deployment's identity provider signs its tokens: no key here to sign with")
    key: str = json.loads((home / "dev-state.json").read_text())["jwt_secret"]
    return key


@local_only
def test_stop_and_start_again_keeps_every_row(tmp_path: Path) -> None:
    # Given a stack with an appointment and a processed webhook
    first = StackProcess(tmp_path / ".local").start()
    api, org = first.info["api_url"], first.info["orgs"][0]
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2032-01-01T10:00:00Z", "duration_minutes": 30}
    assert http("POST", f"{api}/appointments", token=org["token"], body=body)[0] == 201
    post_webhook(api, org, "appointment.book", {**body, "scheduled_at": "2032-01-01T11:00:00Z"})
    wait_for(
        lambda: (
            http("GET", f"{api}/webhook-metrics/delivery-stats?range=1h", token=org["token"])[1]["totals"][
                "completed"
            ]
            == 1
        )
    )
    # When it gets SIGTERM, it exits within 10 seconds
    assert first.terminate() < 10
    assert first.proc is not None
    assert first.proc.returncode == 0
    # And when started again on the same data, everything is still there, same orgs
    second = StackProcess(tmp_path / ".local", port=first.port).start()
    try:
        assert [o["org_id"] for o in second.info["orgs"]] == [o["org_id"] for o in first.info["orgs"]]
        token = second.info["orgs"][0]["token"]
        _, page = http(
            "GET",
            f"{api}/appointments?from=2032-01-01T00%3A00%3A00Z&to=2032-01-02T00%3A00%3A00Z",
            token=token,
        )
        assert len(page["items"]) == 2
        _, stats = http("GET", f"{api}/webhook-metrics/delivery-stats?range=1h", token=token)
        assert stats["totals"]["completed"] == 1
        assert "migrations: up to date" in second.log()
    finally:
        assert second.terminate() < 10


@local_only
@pytest.mark.skipif(
    os.environ.get("SLOTGUARD_AWS") == "localstack",
    reason="starts its own moto server: the moto-backed run covers it (make test)",
)
def test_uses_an_external_aws_endpoint(tmp_path: Path) -> None:
    # Given a separately started moto server (standing in for LocalStack)
    moto = MotoServer(log_path=tmp_path / "moto.log").start()
    try:
        stack = StackProcess(
            tmp_path / ".local",
            extra_env={
                "AWS_ENDPOINT_URL": moto.endpoint,
                "AWS_ACCESS_KEY_ID": "ext",
                "AWS_SECRET_ACCESS_KEY": "ext",
            },
        ).start()
        try:
            # Then the stack created its queues and secrets there and works through it
            sqs = boto3.client(
                "sqs",
                endpoint_url=moto.endpoint,
                region_name="us-east-1",
                aws_access_key_id="ext",
                aws_secret_access_key="ext",
            )
            names = [u.rsplit("/", 1)[-1] for u in sqs.list_queues().get("QueueUrls", [])]
            assert {"slotguard-webhooks", "slotguard-webhooks-dlq"} <= set(names)
            api, org = stack.info["api_url"], stack.info["orgs"][0]
            data = {
                "contact_id": str(uuid.uuid4()),
                "scheduled_at": "2033-03-01T09:00:00Z",
                "duration_minutes": 15,
            }
            assert post_webhook(api, org, "appointment.book", data)[0] == 202
            wait_for(
                lambda: (
                    http("GET", f"{api}/webhook-metrics/delivery-stats?range=1h", token=org["token"])[1][
                        "totals"
                    ]["completed"]
                    == 1
                )
            )
            assert "AWS: " + moto.endpoint in stack.log()
        finally:
            stack.terminate()
    finally:
        moto.stop()


@local_only
def test_a_restart_while_webhooks_wait_loses_none_and_applies_each_once(tmp_path: Path) -> None:
    # Given a stack whose processor cannot finish anything: its delivery log is locked (a long
    # migration, say), so every webhook is queued or in flight, none finished
    first = StackProcess(tmp_path / ".local").start()
    api, org = first.info["api_url"], first.info["orgs"][0]
    port = int(re.search(r"embedded PostgreSQL on 127\.0\.0\.1:(\d+)", first.log()).group(1))  # type: ignore[union-attr]
    admin = psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/slotguard")
    admin.execute("LOCK TABLE slotguard.webhook_delivery_log IN ACCESS EXCLUSIVE MODE")
    starts = [f"2033-03-0{day}T{hour:02d}:00:00Z" for day in (1, 2) for hour in range(8, 18)]
    for start in starts:
        data = {"contact_id": str(uuid.uuid4()), "scheduled_at": start, "duration_minutes": 30}
        assert post_webhook(api, org, "appointment.book", data)[0] == 202
    time.sleep(2)  # the pollers take batches: some messages are in flight, blocked on the lock
    # When the stack is stopped now (SIGTERM) and started again on the same folder
    try:
        assert first.terminate(timeout_s=60) < 60
    finally:
        admin.close()
    second = StackProcess(tmp_path / ".local", port=first.port).start()
    try:
        token = second.info["orgs"][0]["token"]

        def booked() -> list[Any]:
            _, page = http(
                "GET",
                f"{api}/appointments?from=2033-03-01T00%3A00%3A00Z&to=2033-03-03T00%3A00%3A00Z&limit=100",
                token=token,
            )
            return list(page["items"])

        # Then every webhook is applied, each exactly once
        wait_for(lambda: len(booked()) >= len(starts), timeout_s=60)
        time.sleep(2)
        assert sorted(a["scheduled_at"] for a in booked()) == sorted(starts)
        _, stats = http("GET", f"{api}/webhook-metrics/delivery-stats?range=1h", token=token)
        assert stats["totals"]["completed"] == len(starts), stats["totals"]
    finally:
        second.terminate()
