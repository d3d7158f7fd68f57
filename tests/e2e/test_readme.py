"""What the README tells a newcomer to run, run against a local stack: the walkthrough (from the
README's own text, twice in a row), the webhook signer, the admin command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.stack_process import StackProcess, http, running_stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    with running_stack(tmp_path_factory.mktemp("readme") / ".local") as running:
        yield running


def client_env(stack: StackProcess) -> dict[str, str]:
    """A newcomer's shell: the stack's state folder, no AWS configuration at all."""
    env = {k: v for k, v in stack.env.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(stack: StackProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=client_env(stack), capture_output=True, text=True, timeout=60, check=False
    )


def wait_for(check: Callable[[], Any], timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def walkthrough() -> str:
    """The shell blocks of the README's "Try it" section, in order, exactly as written."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^### Try it.*?$(.*?)^#{2,3} ", readme, re.S | re.M)
    assert section, "README.md has no '### Try it' section"
    blocks = re.findall(r"^```bash\n(.*?)^```", section.group(1), re.S | re.M)
    assert blocks, "the 'Try it' section has no bash block"
    return "\n".join(blocks)


def test_the_readme_walkthrough_runs_twice_in_a_row(stack: StackProcess) -> None:
    script = walkthrough()
    for attempt in (1, 2):
        # When a newcomer runs the walkthrough as written (from the repository root)
        result = run(stack, "bash", "-euo", "pipefail", "-c", script)
        # Then every step works, the first time and the second
        assert result.returncode == 0, f"run {attempt}:\n{result.stdout}\n{result.stderr}"
        out = result.stdout
        assert re.search(r'"code": ?"slot_conflict"', out), out
        assert re.search(r'"status": ?"cancelled"', out), out
        assert re.search(r'"status": ?"queued"', out), out
        assert re.search(r'"code": ?"outside_hours"', out), out
        assert re.search(r'"local_start": ?"2030-01-07T11:00:00"', out), out
        assert "/appointments//" not in out + result.stderr


def test_the_signer_sends_each_event_type(stack: StackProcess) -> None:
    api, org = stack.info["api_url"], stack.info["orgs"][1]
    token = org["token"]

    def sign(*args: str) -> dict[str, Any]:
        result = run(stack, sys.executable, "-m", "slotguard_local.sign", "--org", "1", *args)
        assert result.returncode == 0, result.stderr
        answer: dict[str, Any] = json.loads(result.stdout)
        assert answer["status"] == "queued"
        return answer

    def scheduled_at(start: str) -> Callable[[], Any]:
        def find() -> Any:
            day = start[:10]
            _, page = http(
                "GET",
                f"{api}/appointments?from={day}T00%3A00%3A00Z&to={day}T23%3A59%3A00Z&status=scheduled",
                token=token,
            )
            return [a for a in page["items"] if a["scheduled_at"].startswith(start)]

        return find

    # When a booking is sent as a signed webhook
    sign("book", "--scheduled-at", "2035-03-01T09:00:00Z", "--duration", "45")
    # Then it is booked
    [booked] = wait_for(scheduled_at("2035-03-01T09:00"))
    assert booked["duration_minutes"] == 45
    # When it is rescheduled by webhook, then the new appointment exists
    sign("reschedule", booked["id"], "--scheduled-at", "2035-03-01T11:00:00Z")
    [moved] = wait_for(scheduled_at("2035-03-01T11:00"))
    # When that one is cancelled by webhook, then it is cancelled
    sign("cancel", moved["id"], "--reason", "sender cancelled")
    wait_for(
        lambda: http("GET", f"{api}/appointments/{moved['id']}", token=token)[1]["status"] == "cancelled"
    )
    # And any other event type can be sent too (the processor completes it as "ignored")
    sign("send", "contact.updated", json.dumps({"contact_id": str(uuid.uuid4())}))


def test_the_signer_reports_a_refusal(stack: StackProcess) -> None:
    # When the signer is pointed at an org with a secret that is not the org's
    result = run(
        stack,
        sys.executable,
        "-m",
        "slotguard_local.sign",
        "--secret",
        "whsec_" + "A" * 44,
        "send",
        "x",
        "{}",
    )
    # Then it fails, showing the receiver's answer
    assert result.returncode == 1
    assert "401" in result.stderr


def test_the_admin_command_rotates_a_secret_of_the_local_stack_with_one_flag(stack: StackProcess) -> None:
    org = stack.info["orgs"][1]
    # When an operator runs the documented command with --local, no AWS setting in the environment
    result = run(
        stack, sys.executable, "-m", "slotguard.admin", "rotate-webhook-secret", org["org_id"], "--local"
    )
    # Then it printed the new secret, stored in front of the old one in the stack's Secrets Manager
    assert result.returncode == 0, result.stderr
    new = result.stdout.strip()
    assert new.startswith("whsec_")
    sm = boto3.client(
        "secretsmanager",
        endpoint_url=stack.info["aws_endpoint_url"],
        region_name=stack.info["aws_region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    value = sm.get_secret_value(SecretId=f"{stack.info['webhook_secret_prefix']}{org['org_id']}")
    assert json.loads(value["SecretString"])["secrets"] == [new, org["webhook_secret"]]
