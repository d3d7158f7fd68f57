"""Starting and stopping the local stack the ways a developer does: twice on one state folder,
on a port already taken, and killed outright."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.e2e.stack_process import StackProcess, http

pytestmark = pytest.mark.e2e


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's bookkeeping is left


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _postmaster_pid(home: Path) -> int:
    return int((home / "pg" / "postmaster.pid").read_text().splitlines()[0])


def test_a_second_stack_on_the_same_state_folder_refuses_and_leaves_the_first_alone(
    tmp_path: Path,
) -> None:
    # Given a running stack
    first = StackProcess(tmp_path / ".local").start()
    try:
        api, token = first.info["api_url"], first.info["orgs"][0]["token"]
        stack_json = (first.home / "stack.json").read_text()
        # When a second one is started on the same state folder (another port)
        started = time.monotonic()
        second = StackProcess(first.home).run_expecting_refusal()
        # Then it refuses at once, naming the running stack, its port and pid, and the ways out
        assert second.returncode != 0
        assert time.monotonic() - started < 15
        assert first.proc is not None
        message = second.stdout + second.stderr
        assert "already running" in message
        assert f"pid {first.proc.pid}" in message
        assert str(first.port) in message
        assert "SLOTGUARD_HOME" in message
        # And the first stack still answers, and stack.json still points at it
        assert http("GET", f"{api}/appointments", token=token)[0] == 200
        assert (first.home / "stack.json").read_text() == stack_json
    finally:
        first.terminate()


def test_a_killed_stack_leaves_no_child_and_the_next_start_recovers(tmp_path: Path) -> None:
    # Given a running stack with its children (moto's server, PostgreSQL, ...)
    stack = StackProcess(tmp_path / ".local").start()
    assert stack.proc is not None
    children = _descendants(stack.proc.pid) | {_postmaster_pid(stack.home)}
    assert len(children) >= 2
    # When it is killed with SIGKILL (no chance to stop anything itself)
    stack.kill()
    # Then no child is left within a few seconds
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    assert [pid for pid in children if _alive(pid)] == []
    # And a new stack on the same state folder starts and has the same orgs
    again = StackProcess(stack.home, port=stack.port).start()
    try:
        org = again.info["orgs"][0]
        assert http("GET", f"{again.info['api_url']}/appointments", token=org["token"])[0] == 200
    finally:
        again.terminate()


def test_children_left_by_a_stack_killed_with_its_watchdog_are_reaped_by_the_next_start(
    tmp_path: Path,
) -> None:
    # Given a running stack whose watchdog is killed first, then the stack (nothing cleans up)
    stack = StackProcess(tmp_path / ".local").start()
    assert stack.proc is not None
    children = _descendants(stack.proc.pid)
    [watchdog] = [pid for pid in children if b"slotguard_local.watchdog" in _cmdline(pid)]
    [moto] = [pid for pid in children if b"moto.server" in _cmdline(pid)]
    postmaster = _postmaster_pid(stack.home)
    os.kill(watchdog, signal.SIGKILL)
    stack.kill()
    time.sleep(0.5)
    assert _alive(moto)
    assert _alive(postmaster)
    # When a stack starts again from the same state folder
    again = StackProcess(stack.home).start()
    try:
        # Then the previous run's moto and PostgreSQL are gone, and the new stack works
        assert not _alive(moto)
        assert not _alive(postmaster)
        org = again.info["orgs"][0]
        assert http("GET", f"{again.info['api_url']}/appointments", token=org["token"])[0] == 200
    finally:
        again.terminate()


def test_a_port_in_use_is_refused_before_the_database_starts(tmp_path: Path) -> None:
    # Given something already listening on the port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # When a stack is started on it
        started = time.monotonic()
        result = StackProcess(tmp_path / ".local", port=port).run_expecting_refusal()
    # Then it refuses quickly, naming the port and SLOTGUARD_PORT, and started no database
    assert result.returncode != 0
    assert time.monotonic() - started < 15
    message = result.stdout + result.stderr
    assert f"port {port}" in message
    assert "SLOTGUARD_PORT" in message
    assert "database:" not in message
    assert not (tmp_path / ".local" / "pg").exists()


def test_stack_files_are_private_from_their_creation(tmp_path: Path) -> None:
    # Given a stack started by a process whose umask would make new files world-readable
    old = os.umask(0)
    try:
        stack = StackProcess(tmp_path / ".local").start()
    finally:
        os.umask(old)
    try:
        # Then the files holding secrets and tokens are readable by their owner only
        for name in ("dev-state.json", "stack.json"):
            assert (stack.home / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        stack.terminate()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLOTGUARD_WORKER_STATE": "poller"}, "SLOTGUARD_WORKER_STATE must be file or lambda, not 'poller'"),
        (
            {"SLOTGUARD_WORKER_STATE": "lambda", "SLOTGUARD_AWS": "localstack"},
            "SLOTGUARD_WORKER_STATE=lambda needs the stack's own moto",
        ),
    ],
)
def test_a_worker_state_the_stack_cannot_serve_is_refused_before_anything_starts(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    # Given a worker state setting that is unknown, or one LocalStack's own event source mapping
    # would defeat (it would poll the queue itself)
    # When the stack is started with it
    result = StackProcess(tmp_path / ".local", extra_env=env).run_expecting_refusal()
    # Then it refuses, saying why, and started no database
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    assert "database:" not in result.stdout + result.stderr
    assert not (tmp_path / ".local" / "pg").exists()
