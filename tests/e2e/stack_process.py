"""`python -m slotguard_local` as a child process, the way `make local` runs it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slotguard_local.postgres import free_port

# Variables the test session sets for its own fixtures; the stack must not inherit them.
_TEST_ONLY = (
    "DATABASE_URL",
    "AWS_ENDPOINT_URL",
    "WEBHOOK_QUEUE_URL",
    "WEBHOOK_DLQ_URL",
    "WEBHOOK_SECRET_PREFIX",
    "WORKER_STATE_SOURCE",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_BACKOFF_BASE_S",
    "WEBHOOK_BACKOFF_CAP_S",
    "WEBHOOK_CLAIM_STALE_AFTER_S",
    "WEBHOOK_SECRET_CACHE_S",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "SLOTGUARD_WORKER_STATE",  # a test that wants it sets it (extra_env)
)


@dataclass
class StackProcess:
    home: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment the stack runs with (and a client of it, e.g. a README command)."""
        env = {k: v for k, v in os.environ.items() if k not in _TEST_ONLY}
        env.update(
            SLOTGUARD_HOME=str(self.home),
            SLOTGUARD_PORT=str(self.port),
            PYTHONUNBUFFERED="1",
            **self.extra_env,
        )
        return env

    def start(self, timeout_s: float = 90) -> StackProcess:
        stack_json = self.home / "stack.json"
        stack_json.unlink(missing_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "stack.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slotguard_local"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the stack exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            if stack_json.exists():
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                        return self
            time.sleep(0.2)
        raise RuntimeError(f"the stack did not start:\n{self.log()[-3000:]}")

    def run_expecting_refusal(self, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a stack that should refuse to start; its state folder's files are left untouched."""
        return subprocess.run(
            [sys.executable, "-m", "slotguard_local"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def log(self) -> str:
        path = self.home / "stack.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.home / "stack.json").read_text())
        return info

    def terminate(self, timeout_s: float = 10) -> float:
        """SIGTERM; return how long the stack took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL: the stack gets no chance to stop anything itself."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


def http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback http only
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
            text = response.read().decode()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        text = err.read().decode()
        return err.code, json.loads(text) if text else None


@contextlib.contextmanager
def running_stack(home: Path, *, timeout_s: float = 90, **kw: Any) -> Iterator[StackProcess]:
    """A stack started in `home` for the block, stopped after it (if it still runs)."""
    running = StackProcess(home, **kw).start(timeout_s=timeout_s)
    try:
        yield running
    finally:
        if running.proc and running.proc.poll() is None:
            running.terminate()
