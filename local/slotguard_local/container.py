"""One function container: `python -m slotguard_local.container NAME HANDLER_PY FD PARENT_PID`, started by
a ContainerPool (slotguard_local.containers) the way Lambda starts an execution environment.

Init: import the handler module (`handler.lambda_handler`, with its folder on sys.path, as the
Lambda Python runtime imports it) in this fresh interpreter, then say `ready`. After that, one
invocation at a time, from the pool's end of the socket FD: an event and its context in, the
handler's answer (or its error) out. The pool closing its end (the stack stopping, or dying) ends
the process; so does the stack's death while an invocation runs (this process then belongs to
another parent).

Messages are JSON, framed by multiprocessing.connection (a length, then the bytes):
  container -> pool: {"ready": pid, "init_ms": ms} | {"init_error": {...}}  (once)
  pool -> container: {"event": {...}, "context": {...}}
  container -> pool: "+" (accepted: the handler runs), then
                     {"result": ...} | {"error": {"errorType", "errorMessage", "stackTrace"}}
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

from slotguard_local.events import LambdaContext

ACCEPTED = b"+"


def _error(exc: BaseException) -> dict[str, Any]:
    """The error document the Lambda Python runtime reports for an exception."""
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def _watch_parent(parent: int) -> None:
    """The stack died (killed outright) while this container runs: go too, whatever it is doing."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _import_handler(handler_py: Path) -> ModuleType:
    sys.path.insert(0, str(handler_py.parent))
    spec = importlib.util.spec_from_file_location("handler", handler_py)
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler module at {handler_py}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module
    spec.loader.exec_module(module)
    return module


def _context(name: str, fields: dict[str, Any]) -> LambdaContext:
    remaining_ms = int(fields.get("remaining_ms", fields.get("timeout_ms", 30_000)))
    return LambdaContext(
        function_name=fields.get("function_name", name),
        memory_limit_in_mb=int(fields.get("memory_limit_in_mb", 512)),
        aws_request_id=fields["aws_request_id"],
        timeout_ms=int(fields.get("timeout_ms", remaining_ms)),
        _deadline=time.monotonic() + remaining_ms / 1000,
    )


def serve(name: str, handler_py: Path, conn: Connection) -> int:
    started = time.monotonic()
    try:
        emf_file = os.environ.get("SLOTGUARD_EMF_FILE")
        if emf_file:  # before the handler's import: its metrics go to the stack's file
            from slotguard_local.emf import send_emf_to

            send_emf_to(Path(emf_file))
        handler = _import_handler(handler_py).lambda_handler
    except BaseException as exc:
        traceback.print_exc()
        conn.send_bytes(json.dumps({"init_error": _error(exc)}).encode())
        return 1
    init_ms = (time.monotonic() - started) * 1000
    conn.send_bytes(json.dumps({"ready": os.getpid(), "init_ms": round(init_ms, 1)}).encode())
    while True:
        try:
            message = json.loads(conn.recv_bytes())
            conn.send_bytes(ACCEPTED)  # the event is this container's now (see the pool)
        except (EOFError, OSError):
            return 0  # the pool closed its end: this container is done
        try:
            result = handler(message["event"], _context(name, message["context"]))
            answer = json.dumps({"result": result})
        except Exception as exc:  # the runtime reports it; the environment stays (as in Lambda)
            print(f"[ERROR] {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            traceback.print_exc()
            answer = json.dumps({"error": _error(exc)})
        try:
            conn.send_bytes(answer.encode())
        except OSError:
            return 0


def _exit_now(code: int) -> None:
    """Lambda ends an environment by stopping its process, not by finalising the interpreter
    (≈0.3 s of garbage collection for a container holding boto3 clients): flush what was printed
    and go."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str]) -> int:
    name, handler_py, fd, parent = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    # Ctrl-C reaches the whole foreground process group: the stack stops its containers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent)
    return serve(name, handler_py, Connection(fd))


if __name__ == "__main__":
    _exit_now(main(sys.argv[1:]))
