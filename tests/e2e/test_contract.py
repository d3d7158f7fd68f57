"""The OpenAPI document is the contract: the stack serves exactly docs/openapi.json,
schemathesis (all checks, every phase) finds nothing against it, and a client generated from
it books, reads conflicts and validation errors, and reads every metrics answer as typed
models."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack_process import StackProcess, http, running_stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The bounded random budget of the fuzz run in `make test`; raise it for a longer hunt.
FUZZ_SECONDS = int(os.environ.get("SLOTGUARD_FUZZ_SECONDS", "20"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    with running_stack(tmp_path_factory.mktemp("contract") / ".local") as running:
        yield running


def test_the_served_document_is_the_committed_one(stack: StackProcess) -> None:
    status, served = http("GET", f"{stack.info['api_url']}/openapi.json")
    assert status == 200
    assert served == json.loads((ROOT / "docs" / "openapi.json").read_text())


def run_schemathesis(stack: StackProcess, *args: str) -> str:
    """`st run` in the stack's state folder, so its caches and reports stay out of the tree."""
    api = stack.info["api_url"]
    token = stack.info["orgs"][0]["admin_token"]  # an admin may call every operation
    command = [
        str(BIN / "st"),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "--no-color",
        "run",
        f"{api}/openapi.json",
        "--url",
        api,
        "--header",
        f"Authorization: Bearer {token}",
        "--workers",
        "1",
        "--generation-database",
        "none",
        *args,
    ]
    # the hooks add the check that holds a 422 to a valid booking to its documented codes
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("schemathesis_hooks.py"))}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=stack.home, env=env
    )
    out = done.stdout + done.stderr
    summary = re.search(r"(\d+) generated, (\d+) (?:passed|found)[^\n]*", out)
    print(f"schemathesis {' '.join(args)}: {summary.group(0) if summary else '?'}")
    assert done.returncode == 0, out[-6000:]
    return out


def test_schemathesis_finds_nothing_with_a_fixed_seed(stack: StackProcess) -> None:
    out = run_schemathesis(stack, "--seed", "1", "--max-examples", "25")
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ +{phase}", out), out[-3000:]


def test_schemathesis_finds_nothing_with_a_random_seed_and_a_bounded_budget(stack: StackProcess) -> None:
    run_schemathesis(stack, "--max-examples", "10", "--max-time", str(FUZZ_SECONDS))


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    out = tmp_path_factory.mktemp("client")
    config = out / "config.yaml"
    config.write_text("package_name_override: slotguard_client\nproject_name_override: slotguard-client\n")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(ROOT / "docs" / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(out / "slotguard_client"),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("slotguard_client")
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.split(".")[0] == "slotguard_client"]:
            del sys.modules[name]
        shutil.rmtree(out, ignore_errors=True)


def api_module(name: str) -> Any:
    return importlib.import_module(f"slotguard_client.api.default.{name}")


def test_a_generated_client_reads_every_answer_as_typed_models(
    stack: StackProcess, client_package: Any
) -> None:
    from datetime import UTC, datetime

    models = importlib.import_module("slotguard_client.models")
    org = stack.info["orgs"][1]
    member = client_package.AuthenticatedClient(base_url=stack.info["api_url"], token=org["token"])
    admin = client_package.AuthenticatedClient(base_url=stack.info["api_url"], token=org["admin_token"])
    book = api_module("book_appointments_post")
    request = models.BookRequest(
        contact_id=uuid.uuid4(),
        scheduled_at=datetime(2033, 3, 3, 9, 0, tzinfo=UTC),
        duration_minutes=45,
    )
    # When it books: an Appointment, with its Location header
    created = book.sync_detailed(client=member, body=request)
    assert created.status_code == 201
    assert isinstance(created.parsed, models.Appointment)
    assert created.headers["location"] == f"/appointments/{created.parsed.id}"
    # When it books the same slot again: a 409 whose conflicts are Appointments
    conflict = book.sync_detailed(client=member, body=request)
    assert conflict.status_code == 409
    assert isinstance(conflict.parsed, models.ConflictBody)
    assert conflict.parsed.error.code == "slot_conflict"
    assert [c.id for c in conflict.parsed.error.details.conflicts] == [created.parsed.id]
    assert isinstance(conflict.parsed.error.details.conflicts[0], models.Appointment)
    # When it sends an invalid booking: a 422 whose errors are typed
    invalid = book.sync_detailed(
        client=member, body=models.BookRequest.from_dict({**request.to_dict(), "duration_minutes": 0})
    )
    assert invalid.status_code == 422
    assert isinstance(invalid.parsed, models.ValidationErrorBody)
    assert invalid.parsed.error.details.errors[0].loc == ["body", "duration_minutes"]
    # And every metrics answer is a typed model
    answers = {
        "queue_health_webhook_metrics_queue_health_get": models.QueueHealth,
        "delivery_stats_webhook_metrics_delivery_stats_get": models.DeliveryStats,
        "processing_time_webhook_metrics_processing_time_get": models.ProcessingTime,
        "recent_failures_webhook_metrics_recent_failures_get": models.DeliveryList,
        "dead_letter_queue_webhook_metrics_dead_letter_queue_get": models.DeliveryList,
    }
    for name, model in answers.items():
        answer = api_module(name).sync_detailed(client=member)
        assert answer.status_code == 200, (name, answer.content)
        assert isinstance(answer.parsed, model), (name, answer.parsed)
    redrive = api_module("redrive_webhook_metrics_dead_letter_queue_redrive_post")
    assert isinstance(
        redrive.sync_detailed(client=admin, body=models.RedriveRequest()).parsed, models.RedriveResult
    )
    forbidden = redrive.sync_detailed(client=member, body=models.RedriveRequest())
    assert forbidden.status_code == 403
    assert isinstance(forbidden.parsed, models.ErrorBody)
    # And the gateway's own 401 reads too
    anonymous = client_package.Client(base_url=stack.info["api_url"])
    denied = api_module("get_appointment_appointments_appointment_id_get").sync_detailed(
        created.parsed.id, client=anonymous
    )
    assert denied.status_code == 401
    assert isinstance(denied.parsed, models.GatewayMessage | models.ErrorBody)
