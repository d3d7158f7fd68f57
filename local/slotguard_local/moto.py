"""moto's server mode (the AWS wire protocol on a local port) as a child process, with SQS's
character rules applied as AWS applies them (sqs_rules)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from slotguard_local.files import open_private_log
from slotguard_local.postgres import free_port

SERVE = "import moto.server, slotguard_local.sqs_rules as rules; rules.serve()"


@dataclass
class MotoServer:
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[Any] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30, on_spawn: Callable[[int], None] | None = None) -> MotoServer:
        self._log = open_private_log(self.log_path) if self.log_path else None
        self._proc = subprocess.Popen(
            # moto.server's main, with SQS's character rules applied (sqs_rules); the command line
            # names moto.server, which is how the stack's lock recognises its moto child
            [sys.executable, "-c", SERVE, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the stack, which stops moto itself
        )
        if on_spawn is not None:  # e.g. the stack's watchdog: from now on it stops this process
            on_spawn(self._proc.pid)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._proc.returncode}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
