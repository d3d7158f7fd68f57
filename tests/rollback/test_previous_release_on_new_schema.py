"""Rollback, proven (`make test-rollback`, run by .ci/run).

Migrations only go forward: rolling a release back means running the previous release's code on
the schema the newest release migrated (README, "Rollback"). This checks that the previous
release still works there:

1. The previous release is the commit before the newest change to the database contract (the
   versioned migrations and the SQL function files), checked out in a git worktree.
2. This release's local stack migrates a fresh database to the newest schema and writes to it
   (the README's walkthrough: bookings, a reschedule, a cancellation, webhooks), then stops.
3. The previous release's local stack starts on that same database (its migration runner
   applies no numbered migration: every version it knows is there already, and it leaves newer
   ones alone; its SQL function files, if it has them, are applied again: the previous functions
   come back with the previous code, on the newest schema).
4. The previous release's own end-to-end suite (its `make smoke`: the booking lifecycle, a signed
   webhook through the queue, the metrics API) runs against it, and must pass.

The previous release runs with this release's virtualenv (its pinned packages may differ: the
check is the schema, not the dependencies).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack_process import StackProcess, running_stack
from tests.readme.commands import ROOT
from tests.readme.walkthrough import curl_recorder, run_walkthrough

pytestmark = pytest.mark.rollback

CONTRACT = ("layers/slotguard/migrations", "layers/slotguard/sql")


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def previous_release() -> tuple[str, str]:
    """(the newest commit that changed the database contract, the commit before it)."""
    if git("rev-parse", "--is-shallow-repository") == "true":
        git("fetch", "--quiet", "--unshallow")
    newest = git("log", "-1", "--format=%H", "--", *CONTRACT)
    assert newest, "no commit changed the database contract"
    return newest, git("rev-parse", f"{newest}^")


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    newest, before = previous_release()
    tree = tmp_path_factory.mktemp("previous") / "release"
    git("worktree", "add", "--detach", "--force", str(tree), before)
    try:
        print(f"newest contract change {newest[:12]}; previous release {before[:12]}", file=sys.stderr)
        yield tree
    finally:
        git("worktree", "remove", "--force", str(tree))


def previous_env(tree: Path, home: Path) -> dict[str, str]:
    """The previous release's code first on the path (its package and its local stack)."""
    env = StackProcess(home).env
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "layers"), str(tree / "local"), str(tree)])
    return env


def test_the_previous_release_passes_its_own_end_to_end_suite_on_the_newest_schema(
    previous: Path, tmp_path: Path
) -> None:
    home = tmp_path / ".local"
    # Given a database this release migrated to the newest schema and wrote to
    with running_stack(home) as newest:
        run_walkthrough(newest.env, curl_recorder(tmp_path / "curl"), runs=1)
        applied = newest.log()
    assert "migrations:" in applied
    # When the previous release's local stack starts on it
    env = previous_env(previous, home)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import slotguard, slotguard_local; print(slotguard.__file__, slotguard_local.__file__)",
        ],
        env=env,
        cwd=previous,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(previous)) for path in where), where  # its code, not this release's
    (home / "stack.json").unlink()
    with open(home / "previous.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slotguard_local"],
            cwd=previous,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        stack = StackProcess(home, port=int(env["SLOTGUARD_PORT"]), proc=proc)
        _wait_ready(stack, home / "previous.log")
        console = (home / "previous.log").read_text()
        # Then it applied no numbered migration: the newest schema is what it runs on (its own SQL
        # function files, when it has them, come back with its code, as in a rollback)
        assert re.search(r"migrations: (up to date|0 applied)", console), console[-2000:]
        info = json.loads((home / "stack.json").read_text())
        org, other = info["orgs"][0], info["orgs"][1]
        # And its own end-to-end suite (its make smoke) passes against it
        smoke = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e/test_local_stack.py"],
            cwd=previous,
            env={
                **env,
                "SLOTGUARD_API_URL": info["api_url"],
                "SLOTGUARD_TOKEN": org["token"],
                "SLOTGUARD_WEBHOOK_SECRET": org["webhook_secret"],
                "SLOTGUARD_OTHER_TOKEN": other["token"],
            },
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert smoke.returncode == 0, f"{smoke.stdout[-6000:]}\n{smoke.stderr[-3000:]}"
        assert " passed" in smoke.stdout
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def _wait_ready(stack: StackProcess, log: Path, timeout_s: float = 120) -> None:
    assert stack.proc is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.proc.poll() is not None:
            raise AssertionError(f"the previous release's stack exited:\n{log.read_text()[-3000:]}")
        if "[slotguard] ready in" in log.read_text() and (stack.home / "stack.json").exists():
            return
        time.sleep(0.3)
    raise AssertionError(f"the previous release's stack did not start:\n{log.read_text()[-3000:]}")
