"""The local front door as a client and a developer see it: raw HTTP edge cases, the answers
that come from the gateway itself, one access line per request, metrics kept out of the
console."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.stack_process import StackProcess, http, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    with running_stack(tmp_path_factory.mktemp("door") / ".local") as running:
        yield running


def raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client library fixing the headers up); the status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("length", ["-1", "-100", "abc", "1e3", " "])
def test_a_bad_content_length_is_400_and_no_handler_runs(stack: StackProcess, length: str) -> None:
    token = stack.info["orgs"][0]["token"]
    # When a request carries a negative or non-numeric Content-Length
    status, body = raw_request(
        stack.port,
        b"POST /appointments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + length.encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + b"{}" * 10,
    )
    # Then the front door answers 400 itself (it never reads "up to -1 bytes": the whole stream)
    assert status == 400
    assert json.loads(body) == {"message": "Bad Request"}


def test_a_body_over_the_limit_is_413_without_being_read(stack: StackProcess) -> None:
    status, body = raw_request(
        stack.port,
        b"POST /webhooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n{}",
    )
    assert status == 413
    assert json.loads(body) == {"message": "Request Entity Too Large"}


def test_gateway_answers_are_compact_json_like_every_other_answer(stack: StackProcess) -> None:
    api = stack.info["api_url"]
    # When the gateway itself answers (no route, no valid token)
    status, body = raw_request(stack.port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, body) == (404, b'{"message":"Not Found"}')
    status, body = raw_request(
        stack.port, b"GET /appointments HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert (status, body) == (401, b'{"message":"Unauthorized"}')
    # And a function's answer is compact too
    status, page = http("GET", f"{api}/appointments", token=stack.info["orgs"][0]["token"])
    assert status == 200
    assert "items" in page


def test_each_request_prints_one_access_line(stack: StackProcess) -> None:
    api, token = stack.info["api_url"], stack.info["orgs"][0]["token"]
    missing = uuid.uuid4()
    # When a client makes a request a function answers, and one the gateway answers
    assert http("GET", f"{api}/appointments/{missing}?x=1", token=token)[0] == 404
    assert http("GET", f"{api}/appointments/{missing}/nowhere", token=token)[0] == 404
    # Then the console shows one line for each: method, path, status, latency, function
    # (each line is written once its answer is sent: give the second a moment)
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in stack.log().splitlines() if str(missing) in line]
        if len(lines) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(lines) == 2, lines
    handled, unrouted = lines
    assert handled.split()[1:4] == ["GET", f"/appointments/{missing}", "404"]
    assert handled.split()[4].endswith("ms")
    assert handled.split()[5] == "booking"
    assert unrouted.split()[1:4] == ["GET", f"/appointments/{missing}/nowhere", "404"]
    assert unrouted.split()[5] == "gateway"


def test_metrics_go_to_a_file_and_the_console_stays_readable(stack: StackProcess) -> None:
    api, token = stack.info["api_url"], stack.info["orgs"][0]["token"]
    # When a booking is made (it emits EMF metrics) and a request emits none
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2034-02-01T10:00:00Z", "duration_minutes": 30}
    assert http("POST", f"{api}/appointments", token=token, body=body)[0] == 201
    assert http("GET", f"{api}/appointments", token=token)[0] == 200
    time.sleep(0.3)
    # Then the EMF records are in .local/metrics.jsonl, one JSON object a line
    records = [json.loads(line) for line in (stack.home / "metrics.jsonl").read_text().splitlines()]
    assert any("BookingCreated" in record for record in records)
    # And the console has neither raw EMF nor warnings nobody can act on
    log = stack.log()
    assert '"_aws"' not in log
    assert "No application metrics to publish" not in log
    assert "XDG_RUNTIME_DIR" not in log
    assert "Warning" not in log


def test_a_rejected_webhook_counts_in_the_metrics_file_not_on_the_console(stack: StackProcess) -> None:
    api, org_id = stack.info["api_url"], stack.info["orgs"][0]["org_id"]
    # When a webhook arrives with a signature that is not the org's (WebhookRejected, reason
    # bad_signature: a count with its own dimension, which Powertools prints itself)
    status, _ = http(
        "POST",
        f"{api}/webhooks/{org_id}",
        body={"type": "appointment.book", "data": {}},
        headers={
            "webhook-id": f"msg_{uuid.uuid4().hex}",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,AAAA",
        },
    )
    assert status == 401

    # Then its EMF record is in the metrics file, with its reason
    def rejected() -> list[dict[str, object]]:
        lines = (stack.home / "metrics.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if "WebhookRejected" in r]

    deadline = time.monotonic() + 5
    while not rejected() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [r["reason"] for r in rejected()] == ["bad_signature"]
    # And the console shows the request's line (written once the answer is sent: waited for),
    # never the raw record
    line = f"POST /webhooks/{org_id} 401"
    deadline = time.monotonic() + 5
    while line not in stack.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert line in stack.log()
    assert '"_aws"' not in stack.log()
