"""Every command README.md shows, run as a user types it, from the repository root (`make
test-readme`; .ci/run runs it on a clean clone).

`make local` runs in the background in its own process group, its console captured, as in a
terminal. Once it is ready, the README's walkthrough runs against that stack (its bash blocks,
verbatim; `curl` is the real curl, wrapped only to record each answer's status and body), then
Ctrl-C: SIGINT to the whole process group, as a terminal sends it. The same for both LocalStack
forms. `make smoke` and `make load` run against the running `make local`; `make synth`, `make
lint` and `make bench` (at a small size, through its documented knobs) on their own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from slotguard_local.postgres import free_port
from tests.readme.commands import AS_TYPED, ROOT
from tests.readme.walkthrough import curl_recorder, run_walkthrough

pytestmark = pytest.mark.readme

# What a user's shell would not have: the outer make's and pytest's own settings.
_NOT_A_USERS = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST")
_TEST_ONLY = ("DATABASE_URL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def users_shell(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _NOT_A_USERS + _TEST_ONLY and not k.startswith(("SLOTGUARD_", "WEBHOOK_"))
    }
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(extra)
    return env


def typed(command: str, env: dict[str, str], timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    """`command` in bash from the repository root, as typed; it must exit 0."""
    assert command in AS_TYPED or command.split(" ", 1)[0] not in ("make",), command
    done = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, (
        f"{command} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done


def _processes_of(home: Path) -> list[str]:
    """Every live process started for the stack in `home` (they all carry its SLOTGUARD_HOME)."""
    marker = f"SLOTGUARD_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")[:200]
                    found.append(f"{entry.name} {cmdline!r}")
        except OSError:
            continue
    return found


@dataclass
class MakeLocal:
    """`make local ...` typed in a terminal, in its own process group, console captured."""

    command: str
    home: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return users_shell(SLOTGUARD_HOME=str(self.home), SLOTGUARD_PORT=str(self.port))

    @property
    def console(self) -> str:
        path = self.home.parent / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.home / "stack.json").read_text())
        return info

    def start(self, timeout_s: float) -> MakeLocal:
        assert self.command in AS_TYPED, self.command
        self.home.parent.mkdir(parents=True, exist_ok=True)
        with open(self.home.parent / "console.log", "wb") as console:
            self.proc = subprocess.Popen(
                ["bash", "-c", self.command],
                cwd=ROOT,
                env=self.env,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's job: Ctrl-C reaches the whole group
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.command} exited {self.proc.returncode}:\n{self.console[-4000:]}")
            if "[slotguard] ready in" in self.console and (self.home / "stack.json").exists():
                return self
            time.sleep(0.5)
        raise AssertionError(f"{self.command} was not ready in {timeout_s} s:\n{self.console[-4000:]}")

    def ctrl_c(self, within_s: float) -> float:
        """SIGINT to the process group, as a terminal's Ctrl-C; how long the exit took."""
        assert self.proc is not None
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(within_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(
                f"{self.command} still ran {within_s} s after Ctrl-C:\n{self.console[-3000:]}"
            ) from None
        took = time.monotonic() - started
        # make exits 0 when its child did, or dies of the same SIGINT (a shell reports 130)
        assert code in (0, 130, -signal.SIGINT), f"exit status {code}:\n{self.console[-3000:]}"
        assert "[slotguard] stopped" in self.console, self.console[-3000:]
        deadline = time.monotonic() + 5
        while (left := _processes_of(self.home)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"left behind by {self.command}: {left}"
        return took

    def stop_if_running(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def curl_bin(tmp_path: Path) -> Path:
    return curl_recorder(tmp_path / "curl")


def test_make_synth_and_make_lint() -> None:
    # When a user runs `make synth` and `make lint` as the README shows them, then both succeed
    done = typed("make synth", users_shell(), timeout_s=900)
    assert (ROOT / "cdk.out" / "Slotguard-dev.template.json").exists(), done.stdout[-2000:]
    typed("make lint", users_shell(), timeout_s=900)


def test_make_help_lists_every_target() -> None:
    done = typed("make help", users_shell())
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert phony
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")}
    assert set(phony.group(1).split()) <= listed


def test_make_local_runs_the_walkthrough_and_stops_on_ctrl_c(tmp_path: Path, curl_bin: Path) -> None:
    stack = MakeLocal("make local", tmp_path / "moto" / ".local")
    try:
        # Given `make local`, typed in a terminal
        stack.start(timeout_s=600)  # a fresh clone's first run installs the `local` extra
        assert f"[slotguard] API: http://127.0.0.1:{stack.port}" in stack.console
        # When the README's walkthrough runs against it, twice in a row, then every step answers
        # as the README says (checked step by step)
        run_walkthrough(stack.env, curl_bin)
        info = stack.info
        org, other = info["orgs"][0], info["orgs"][1]
        # When `make smoke` runs against it, as the README's Smoke test section sets it up
        typed(
            "make smoke",
            users_shell(
                SLOTGUARD_API_URL=info["api_url"],
                SLOTGUARD_TOKEN=org["token"],
                SLOTGUARD_WEBHOOK_SECRET=org["webhook_secret"],
                SLOTGUARD_OTHER_TOKEN=other["token"],
            ),
            timeout_s=600,
        )
        # And `make load` at a small size through its knobs, then it prints its table and pass lines
        load = typed(
            "make load",
            users_shell(
                SLOTGUARD_API_URL=info["api_url"],
                SLOTGUARD_TOKEN=org["token"],
                SLOTGUARD_WEBHOOK_SECRET=org["webhook_secret"],
                LOAD_USERS="4",
                LOAD_SECONDS="8",
                LOAD_BURST="40",
            ),
            timeout_s=600,
        )
        assert "| pass line | measured |" in load.stdout, load.stdout[-3000:]
        aws = {
            "AWS_ENDPOINT_URL": info["aws_endpoint_url"],
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }
        # And the admin command that creates an org's secret, in each form the README shows
        # (against the local stack with --local, and against AWS with the deploy section's
        # environment variables), placeholders filled in
        sm = boto3.client(
            "secretsmanager",
            endpoint_url=info["aws_endpoint_url"],
            region_name=info["aws_region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        blocks = readme_blocks_with("python -m slotguard.admin rotate-webhook-secret")
        assert len(blocks) >= 2, blocks
        for block in blocks:
            org_id = str(uuid.uuid4())
            command = block.replace("<region>", info["aws_region"]).replace("<org_id>", org_id)
            if "--local" in command:
                env, prefix = users_shell(SLOTGUARD_HOME=str(stack.home)), info["webhook_secret_prefix"]
            else:
                named = re.search(r"WEBHOOK_SECRET_PREFIX=(\S+)", command)
                assert named, command
                env, prefix = users_shell(**aws), named.group(1)
            secret = typed(command, env).stdout.strip()
            stored = json.loads(sm.get_secret_value(SecretId=f"{prefix}{org_id}")["SecretString"])
            assert stored["secrets"] == [secret], command
        # When Ctrl-C is pressed, then it stops within seconds and leaves no process behind
        stack.ctrl_c(within_s=15)
    finally:
        stack.stop_if_running()


def readme_line(pattern: str) -> str:
    match = re.search(rf"^{pattern}$", (ROOT / "README.md").read_text(), re.M)
    assert match, f"README.md has no line matching {pattern}"
    return match.group(0).strip()


def readme_blocks_with(text: str) -> list[str]:
    """The README's bash blocks that contain `text`, as written (continuation lines included)."""
    blocks = re.findall(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    return [str(block) for block in blocks if text in block]


@pytest.mark.parametrize(
    ("command", "start_s"),
    [
        ("make local AWS=localstack", 600),
        ("make local AWS=localstack CDK=1", 900),
    ],
    ids=["localstack", "localstack-cdk"],
)
def test_make_local_on_localstack(command: str, start_s: float, tmp_path: Path, curl_bin: Path) -> None:
    stack = MakeLocal(command, tmp_path / "ls" / ".local")
    try:
        # Given `make local` on LocalStack, typed in a terminal (the first run installs LocalStack)
        stack.start(timeout_s=start_s)
        # When the README's walkthrough runs against it, then every step answers as the README says
        run_walkthrough(stack.env, curl_bin, runs=1)
        if "CDK=1" not in command:
            # And the deploy section's preflight, as typed (after make synth wrote cdk.out), reads
            # the account's Lambda settings from LocalStack's Lambda API (moto has no
            # GetAccountSettings)
            info = stack.info
            preflight = readme_line(r"\.venv/bin/python -m infra\.preflight .*")
            env = users_shell(
                AWS_ENDPOINT_URL=info["aws_endpoint_url"],
                AWS_DEFAULT_REGION=info["aws_region"],
                AWS_ACCESS_KEY_ID="test",
                AWS_SECRET_ACCESS_KEY="test",
            )
            done = typed(preflight, env)
            assert "fit the account's quota" in done.stdout, done.stdout
        # When Ctrl-C is pressed, then it stops within seconds and leaves no process behind
        stack.ctrl_c(within_s=20)
    finally:
        stack.stop_if_running()


def test_make_bench_at_a_small_size() -> None:
    # When `make bench` runs at a small size through its documented knobs
    done = typed(
        "make bench",
        users_shell(
            BENCH_N="40",
            BENCH_SLOTS="200",
            BENCH_PROCESSES="4",
            BENCH_ROUNDS="1",
            BENCH_BATCHES="4",
            BENCH_REQUESTS="20",
            BENCH_COLD_RUNS="1",
            BENCH_LOG_REQUESTS="20",
            BENCH_SEARCHES="3",
        ),
        timeout_s=900,
    )
    # Then it prints its one table, each figure beside a baseline, as a ratio
    rows = [line for line in done.stdout.splitlines() if line.startswith("|") and "---" not in line]
    assert len(rows) > 5, done.stdout
    assert any(re.search(r"\d+(\.\d+)?x", row) for row in rows), done.stdout


def test_the_openapi_command_writes_the_committed_document(tmp_path: Path) -> None:
    # When the README's command regenerates the OpenAPI document, as typed
    committed = (ROOT / "docs" / "openapi.json").read_bytes()
    try:
        typed(".venv/bin/python -m slotguard_local.openapi > docs/openapi.json", users_shell())
        # Then it writes exactly the committed document
        assert (ROOT / "docs" / "openapi.json").read_bytes() == committed
    finally:
        (ROOT / "docs" / "openapi.json").write_bytes(committed)


def test_make_layer_lock_writes_the_committed_lock() -> None:
    # When the README's command regenerates the layer's lock, as typed
    lock = ROOT / "layers" / "requirements.lock"
    committed = lock.read_bytes()
    try:
        typed("make layer-lock", users_shell(), timeout_s=300)
        # Then it writes exactly the committed lock: every dependency at its pinned version and hash
        assert lock.read_bytes() == committed
    finally:
        lock.write_bytes(committed)
