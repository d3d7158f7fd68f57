"""One stack per state folder.

The stack holds an exclusive `flock` on `<home>/stack.lock` for as long as it (or the watchdog
cleaning up after it) lives; the kernel drops the lock when they die, however they die, so a
crash leaves nothing to clean by hand. The file also says who holds it (pid, port, API URL,
child processes), for the message a second stack prints, and so the next start can reap a
child a crash left behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from slotguard_local.watchdog import alive, stop_process


class StackAlreadyRunning(RuntimeError):
    pass


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class StateFolderLock:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "stack.lock"
        self.fd: int | None = None
        self._info: dict[str, Any] = {}

    def acquire(self, port: int, host: str, wait_for_cleanup_s: float = 15) -> None:
        """Take the folder, or raise StackAlreadyRunning with what the user needs to know."""
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_for_cleanup_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._read(fd)
                pid = int(holder.get("pid") or 0)
                # A dead holder whose watchdog is still stopping its children: wait for it.
                if pid and not alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                os.close(fd)
                raise StackAlreadyRunning(self._refusal(holder)) from None
        self.fd = fd
        self._reap(self._read(fd))
        self._info = {"pid": os.getpid(), "port": port, "api_url": f"http://{host}:{port}", "children": {}}
        self._write()

    def record_child(self, name: str, pid: int, match: str) -> None:
        """Remember a child process (and a word of its command line, to recognise it later)."""
        self._info["children"][name] = {"pid": pid, "match": match}
        self._write()

    def release(self) -> None:
        if self.fd is not None:
            self._info["children"] = {}
            self._write()
            os.close(self.fd)  # closing our descriptor drops our hold on the lock
            self.fd = None

    def _write(self) -> None:
        assert self.fd is not None
        data = json.dumps(self._info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        try:
            info: dict[str, Any] = json.loads(os.pread(fd, 65536, 0) or b"{}")
        except ValueError:
            return {}
        return info

    def _reap(self, previous: dict[str, Any]) -> None:
        """Stop what a previous run of this folder left running (its watchdog could not)."""
        for name, child in (previous.get("children") or {}).items():
            pid = int(child.get("pid") or 0)
            if pid and alive(pid) and child.get("match", "\0") in _cmdline(pid):
                print(f"[slotguard] stopping {name} (pid {pid}) left running by a previous run", flush=True)
                stop_process(pid)

    def _refusal(self, holder: dict[str, Any]) -> str:
        pid, port, url = holder.get("pid", "?"), holder.get("port", "?"), holder.get("api_url", "?")
        return (
            f"another slotguard stack is already running with the state folder {self.home}: "
            f"pid {pid}, port {port}, API {url}.\n"
            f"  Stop it first (Ctrl-C in its terminal, or `kill {pid}`), or give this one its own "
            f"state folder and port: SLOTGUARD_HOME=/tmp/slotguard-2 SLOTGUARD_PORT=3001 make local"
        )
