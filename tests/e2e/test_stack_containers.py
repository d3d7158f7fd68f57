"""The local stack runs each function container as its own OS process, as Lambda does: concurrent
requests are served by separate processes, each with its own event and its own metrics; a killed
container is replaced; the containers stop with the stack however it stops."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack_process import StackProcess, http, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    with running_stack(tmp_path_factory.mktemp("containers") / ".local") as running:
        yield running


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    return parents


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def containers(stack: StackProcess, function: str) -> set[int]:
    """The live container processes of one function under the stack's process."""
    assert stack.proc is not None
    found = set()
    for pid, parent in _parents().items():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = parent == stack.proc.pid and b"slotguard_local.container" in argv
        if ours and function.encode() in argv and _alive(pid):
            found.add(pid)
    return found


def _wait(check: Any, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


_BURSTS = itertools.count()  # each burst of the module's one stack books on a day no other burst uses


def _burst(stack: StackProcess, n: int = 30) -> list[tuple[str, Any, tuple[int, Any]]]:
    """n requests to the booking function at once, half bookings of distinct slots, half reads of
    appointments that do not exist; each with what it asked."""
    api, token = stack.info["api_url"], stack.info["orgs"][0]["token"]
    day = 1 + next(_BURSTS)  # a day of its own: two bursts drawing the same day conflicted (409)
    jobs: list[tuple[str, Any]] = []
    for i in range(n):
        if i % 2:
            jobs.append(("get", str(uuid.uuid4())))
        else:
            slot = f"2035-03-{day:02d}T{(i // 2) % 24:02d}:{(i // 48) * 30:02d}:00Z"
            body = {"contact_id": str(uuid.uuid4()), "scheduled_at": slot, "duration_minutes": 20}
            jobs.append(("book", body))

    def run(job: tuple[str, Any]) -> tuple[str, Any, tuple[int, Any]]:
        kind, what = job
        if kind == "book":
            return kind, what, http("POST", f"{api}/appointments", token=token, body=what)
        return kind, what, http("GET", f"{api}/appointments/{what}", token=token)

    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(run, jobs))


def test_concurrent_requests_run_in_separate_processes_and_each_gets_its_own_answer(
    stack: StackProcess,
) -> None:
    # When 30 requests reach the booking function at once
    answers = _burst(stack)
    # Then each got the answer to its own request (no container read another request's event)
    for kind, what, (status, body) in answers:
        if kind == "book":
            assert status == 201, body
            assert (body["contact_id"], body["scheduled_at"]) == (what["contact_id"], what["scheduled_at"])
        else:
            assert status == 404, body
            assert body["error"]["code"] == "not_found"
    # And they were served by several container processes, children of the stack
    pids = containers(stack, "booking")
    assert len(pids) >= 2
    assert stack.proc is not None and stack.proc.pid not in pids


def test_metrics_of_concurrent_containers_never_mix(stack: StackProcess) -> None:
    emf = stack.home / "metrics.jsonl"
    before = len(emf.read_text().splitlines()) if emf.exists() else 0
    # When 30 requests (15 bookings) are served at once by several containers
    answers = _burst(stack)
    booked = sum(1 for kind, _, _ in answers if kind == "book")
    time.sleep(0.3)
    # Then metrics.jsonl has one record per booking, each holding that invocation's metrics only,
    # named after the function that emitted it
    records = [json.loads(line) for line in emf.read_text().splitlines()[before:]]
    bookings = [r for r in records if "BookingAttempted" in r]
    assert len(bookings) == booked
    for record in bookings:
        assert record["BookingAttempted"] == [1.0]
        assert record["BookingCreated"] == [1.0]
        assert len(record["BookingLatency"]) == 1
        assert record["service"] == "booking"


def test_a_killed_container_is_replaced_and_the_next_request_answered(stack: StackProcess) -> None:
    api, token = stack.info["api_url"], stack.info["orgs"][0]["token"]
    assert http("GET", f"{api}/appointments", token=token)[0] == 200
    # Given the booking function's containers, all killed outright
    killed = containers(stack, "booking")
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    _wait(lambda: not any(_alive(pid) for pid in killed))
    # When the next requests come
    statuses = [http("GET", f"{api}/appointments", token=token)[0] for _ in range(3)]
    # Then they are answered, by a new container
    assert statuses == [200, 200, 200]
    now = containers(stack, "booking")
    assert now
    assert not now & killed


def test_the_webhook_path_runs_in_its_functions_own_containers(stack: StackProcess) -> None:
    from tests.e2e.test_local_stack import post_webhook, wait_for

    api, org = stack.info["api_url"], stack.info["orgs"][0]
    data = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2035-05-02T09:00:00Z", "duration_minutes": 30}
    # When a signed webhook books a slot
    assert post_webhook(api, org, "appointment.book", data)[0] == 202
    url = f"{api}/appointments?from=2035-05-02T09%3A00%3A00Z&to=2035-05-02T09%3A30%3A00Z"
    wait_for(lambda: http("GET", url, token=org["token"])[1]["items"])
    # Then the receiver and the processor each ran in containers of their own
    receivers, processors = containers(stack, "webhook_receiver"), containers(stack, "webhook_processor")
    assert receivers and processors
    assert not receivers & processors
    assert not (receivers | processors) & containers(stack, "booking")


def _with_containers(home: Path) -> tuple[StackProcess, set[int]]:
    stack = StackProcess(home).start()
    try:
        answers = _burst(stack, 10)
        assert all(status in (201, 404) for _, _, (status, _) in answers)
        pids = containers(stack, "booking")
        assert pids
    except BaseException:
        stack.terminate()  # never leave a stack behind a failed setup
        raise
    return stack, pids


def test_a_stopped_stack_leaves_no_container(tmp_path: Path) -> None:
    # Given a stack with warm containers
    stack, pids = _with_containers(tmp_path / ".local")
    # When it gets SIGTERM
    # Then it exits within 10 s, its containers with it
    assert stack.terminate() < 10
    assert [pid for pid in pids if _alive(pid)] == []


def test_a_killed_stack_leaves_no_container(tmp_path: Path) -> None:
    # Given a stack with warm containers
    stack, pids = _with_containers(tmp_path / ".local")
    # When it is killed outright
    stack.kill()
    # Then its containers exit within a few seconds
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert [pid for pid in pids if _alive(pid)] == []
    # (the watchdog stops PostgreSQL and moto, as before; give it a moment before tmp_path goes)
    time.sleep(1)
