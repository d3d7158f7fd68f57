"""The stack's watchdog: its children die with it, however it dies.

`python -m slotguard_local.watchdog` runs beside the stack, in its own session (Ctrl-C does not
reach it), reading its standard input, a pipe whose only writer is the stack:

    process <pid>        a child process to stop (its process group, SIGTERM then SIGKILL)
    postgres <data dir>  an embedded PostgreSQL to stop (fast shutdown, then immediate)
    done                 the stack stopped its children itself: nothing left to do

When the pipe closes without `done` (the stack was killed, crashed, or exited without
stopping), the watchdog stops every child it was told about, then exits. It also holds the
stack's state-folder lock, so a new stack on the same folder waits for that cleanup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def _signal(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_process(pid: int) -> None:
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, 5):
        _signal(pid, signal.SIGKILL)


def stop_postgres(data_dir: Path) -> None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig, wait_s in ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0)):  # fast, then immediate
        with suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_gone(pid, wait_s):
            return


def watch(lines: IO[str]) -> bool:
    """Follow the stack's instructions until its pipe closes; True when it said `done`."""
    processes: list[int] = []
    postgres: list[Path] = []
    for line in lines:
        verb, _, arg = line.strip().partition(" ")
        if verb == "process":
            processes.append(int(arg))
        elif verb == "postgres":
            postgres.append(Path(arg))
        elif verb == "done":
            return True
    for pid in processes:
        stop_process(pid)
    for data_dir in postgres:
        stop_postgres(data_dir)
    return False


@dataclass
class Watchdog:
    """The stack's end of the pipe."""

    keep_fds: tuple[int, ...] = ()
    _proc: subprocess.Popen[str] | None = field(default=None, repr=False)

    def start(self) -> Watchdog:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "slotguard_local.watchdog"],
            stdin=subprocess.PIPE,
            text=True,
            start_new_session=True,
            pass_fds=self.keep_fds,
        )
        return self

    def _tell(self, line: str) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()

    def watch_process(self, pid: int) -> None:
        self._tell(f"process {pid}")

    def watch_postgres(self, data_dir: Path) -> None:
        self._tell(f"postgres {data_dir}")

    def done(self) -> None:
        """Every child is stopped: let the watchdog go."""
        if self._proc is None:
            return
        with suppress(BrokenPipeError):
            self._tell("done")
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watch(sys.stdin)
