"""LocalStack's open-source runtime (localstack-core, host mode: no Docker) as a child process.

`make local AWS=localstack` installs it into its own environment, .localstack-venv (Python 3.13,
pinned by local/localstack-constraints.txt), never into .venv: its dependency tree must not reach
the layer or the dev extra. It runs with its files under the state folder and listens on loopback
only: its default gateway server (twisted) binds every interface whatever GATEWAY_LISTEN says, so
it runs with its hypercorn gateway, which binds exactly the address given
(tests/e2e/test_localstack.py checks every listening socket of the stack).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from slotguard_local.files import open_private_log
from slotguard_local.functions import ROOT
from slotguard_local.postgres import free_port

VERSION = "2026.3.0"
VENV = ROOT / ".localstack-venv"
MATCH = "localstack.runtime.main"  # a word of its command line, to recognise it (lock.py)


class LocalStackMissing(RuntimeError):
    """The runtime is not installed; the message says how to install it."""


def runtime_python(venv: Path = VENV) -> Path:
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists() or not python.exists():
        raise LocalStackMissing(
            f"LocalStack's runtime is not installed in {venv}: `make local AWS=localstack` installs it"
        )
    return python


@dataclass
class LocalStackServer:
    home: Path  # its FILESYSTEM_ROOT (state, cache, logs)
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    venv: Path = VENV
    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[Any] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_"))}
        env.update(
            # This machine kind carries Docker's marker file: without this LocalStack believes it
            # runs in its own container and writes into system folders.
            OVERRIDE_IN_DOCKER="0",
            FILESYSTEM_ROOT=str(self.home),
            GATEWAY_SERVER="hypercorn",  # binds GATEWAY_LISTEN's host; twisted binds 0.0.0.0
            GATEWAY_LISTEN=f"127.0.0.1:{self.port}",
            LOCALSTACK_HOST=f"127.0.0.1:{self.port}",
            SQS_ENDPOINT_STRATEGY="path",  # queue URLs on 127.0.0.1, no *.localstack.cloud DNS
            DISABLE_EVENTS="1",  # no analytics
            DNS_ADDRESS="0",  # no DNS server
            SKIP_SSL_CERT_DOWNLOAD="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, timeout_s: float = 60, on_spawn: Callable[[int], None] | None = None) -> LocalStackServer:
        python = runtime_python(self.venv)
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = open_private_log(self.log_path) if self.log_path else None
        self._proc = subprocess.Popen(
            [str(python), "-m", MATCH],
            env=self.environment(),
            cwd=self.home,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the stack, which stops LocalStack itself
        )
        if on_spawn is not None:  # e.g. the stack's watchdog: from now on it stops this process
            on_spawn(self._proc.pid)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"LocalStack exited with {self._proc.returncode} (log: {self.log_path})")
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"LocalStack did not start in {timeout_s:.0f}s (log: {self.log_path})")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/_localstack/health", timeout=2) as answer:  # noqa: S310 - loopback
                health: dict[str, Any] = json.loads(answer.read())
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return "services" in health

    def stop(self, grace_s: float = 3) -> None:
        """SIGTERM, then SIGKILL: its shutdown can wait on requests still open (the pollers' long
        polls); its state is in memory anyway (what is queued was saved by the stack first)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
