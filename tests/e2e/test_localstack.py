"""`make local AWS=localstack`: the local stack on LocalStack's open-source runtime instead of moto.

`make test-localstack` runs these and tests/e2e/test_local_stack.py with SLOTGUARD_AWS=localstack
(the runtime installed in .localstack-venv); elsewhere they are skipped, saying so.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from slotguard.topology import WEBHOOK_QUEUE
from tests.e2e.stack_process import StackProcess, http, running_stack
from tests.e2e.test_local_stack import post_webhook, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("SLOTGUARD_AWS") != "localstack",
        reason="LocalStack-backed: `make test-localstack` runs these (SLOTGUARD_AWS=localstack)",
    ),
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            found |= {child} | _children(child)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _localstack_pid(stack: StackProcess) -> int:
    assert stack.proc is not None
    [pid] = [p for p in _children(stack.proc.pid) if b"localstack.runtime.main" in _cmdline(p)]
    return pid


def _postmaster_pid(home: Path) -> int:
    return int((home / "pg" / "postmaster.pid").read_text().splitlines()[0])


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # /proc/net/tcp{,6} print each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words)), int(port, 16)


def bound_sockets(pids: set[int]) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of every listening TCP socket and bound UDP socket of `pids`."""
    inodes = set().union(*(_socket_inodes(pid) for pid in pids))
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            listening = state == "0A" if table.startswith("tcp") else True
            if inode in inodes and listening:
                found.append((table, *_address(local)))
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    with running_stack(tmp_path_factory.mktemp("localstack") / ".local") as running:
        yield running


def _sqs(stack: StackProcess) -> object:
    return boto3.client(
        "sqs",
        endpoint_url=stack.info["aws_endpoint_url"],
        region_name=stack.info["aws_region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_the_stack_runs_on_localstack_and_listens_on_loopback_only(stack: StackProcess) -> None:
    # Given the stack started as `make local AWS=localstack` starts it
    assert stack.proc is not None
    # Then its banner names LocalStack, and its AWS endpoint is LocalStack's
    assert "AWS: LocalStack 2026.3.0" in stack.log()
    endpoint = stack.info["aws_endpoint_url"]
    with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=5) as answer:  # noqa: S310
        assert {"sqs", "secretsmanager", "cloudwatch"} <= set(json.loads(answer.read())["services"])
    # And every socket the stack, LocalStack and PostgreSQL listen on is a loopback address
    pids = {stack.proc.pid, _postmaster_pid(stack.home)} | _children(stack.proc.pid)
    bound = bound_sockets(pids)
    ports = {port for _, _, port in bound}
    assert {stack.port, int(endpoint.rsplit(":", 1)[1])} <= ports
    assert [s for s in bound if not ipaddress.ip_address(s[1]).is_loopback] == []


def test_the_webhook_queue_on_localstack_has_the_redrive_policy(stack: StackProcess) -> None:
    # Given the stack on LocalStack
    sqs = _sqs(stack)
    # When its webhook queue is read from LocalStack
    url = sqs.get_queue_url(QueueName="slotguard-webhooks")["QueueUrl"]  # type: ignore[attr-defined]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]  # type: ignore[attr-defined]
    # Then it dead-letters after the configured receive count, into the dead-letter queue
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == WEBHOOK_QUEUE.max_receive_count
    assert redrive["deadLetterTargetArn"].endswith(":slotguard-webhooks-dlq")
    assert url.startswith(stack.info["aws_endpoint_url"])  # no *.localstack.cloud name to resolve


def test_queue_health_degrades_as_under_moto_without_the_oldest_message_age(stack: StackProcess) -> None:
    # Given a processed webhook on the LocalStack-backed stack
    api, org = stack.info["api_url"], stack.info["orgs"][0]
    data = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2034-02-01T09:00:00Z", "duration_minutes": 15}
    assert post_webhook(api, org, "appointment.book", data)[0] == 202
    wait_for(
        lambda: (
            http("GET", f"{api}/webhook-metrics/delivery-stats?range=1h", token=org["token"])[1]["totals"][
                "completed"
            ]
            >= 1
        )
    )
    # When the queue health is asked for
    status, health = http("GET", f"{api}/webhook-metrics/queue-health", token=org["admin_token"])
    # Then it answers, with no oldest-message age (LocalStack publishes no such metric), as under moto
    assert status == 200, health
    assert health["queue"]["oldest_message_age_s"] is None
    assert health["status"] == "healthy"
    assert health["worker"]["state"] == "Enabled"


def test_localstack_is_stopped_after_a_crash_and_reaped_by_the_next_start(tmp_path: Path) -> None:
    # Given a stack on LocalStack whose watchdog is killed first, then the stack itself
    first = StackProcess(tmp_path / ".local").start()
    assert first.proc is not None
    orphan = _localstack_pid(first)
    [watchdog] = [p for p in _children(first.proc.pid) if b"slotguard_local.watchdog" in _cmdline(p)]
    os.kill(watchdog, signal.SIGKILL)
    first.kill()
    time.sleep(0.5)
    assert _alive(orphan)
    # When a stack starts again on the same state folder, Then that LocalStack is gone
    second = StackProcess(first.home).start()
    assert not _alive(orphan)
    assert "stopping localstack" in second.log()
    # And when this stack is killed (its watchdog alive), its LocalStack stops within seconds
    child, postmaster = _localstack_pid(second), _postmaster_pid(second.home)
    second.kill()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.2)
    assert not _alive(child)
    # (PostgreSQL too: the watchdog stops it)
    wait_for(lambda: not _alive(postmaster), timeout_s=15)
