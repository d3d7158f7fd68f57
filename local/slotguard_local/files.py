"""Files of the local stack that hold secrets, tokens or personal data: private from birth."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only from the moment it exists.

    The content goes to a new file created with mode 0600 (whatever the umask: it can only
    remove bits), which then replaces `path` atomically; a reader never sees a world-readable
    file, nor a half-written one. Nothing is chmod'ed after the fact.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_private_log(path: Path) -> IO[bytes]:
    """Append to a log readable by its owner only from birth (an emulator's log can echo request
    bodies: webhook payloads, secrets)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
