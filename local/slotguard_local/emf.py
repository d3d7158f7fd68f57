"""EMF metric records to a file instead of the console.

In Lambda, Powertools prints each function's metrics as one EMF JSON line on stdout, where
CloudWatch Logs picks them up. Locally that line would drown the console, so each function
container (slotguard_local.container) sends the same records to `<home>/metrics.jsonl` (one JSON
object a line, appended), where they stay inspectable, e.g. `tail -f .local/metrics.jsonl`. An
invocation that emitted no metric writes nothing (Powertools would warn about it, which nobody can
act on locally). Every container appends to the one file: each record is one write(2) to a file
opened with O_APPEND, so records of different containers never interleave.

Powertools' `single_metric` (a count with its own dimension, e.g. `WebhookRejected` by reason)
prints its record itself rather than through the metrics provider, so the container's stdout is
routed too: a line that is an EMF record (a JSON object whose first key is `_aws`) goes to the
file, every other line to the console.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from slotguard.observability import metrics

EMF_PREFIX = '{"_aws"'


def _append(path: Path, record: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (record + "\n").encode())
    finally:
        os.close(fd)


class _EmfLinesToFile(io.TextIOBase):
    """stdout, but an EMF line goes to the metrics file instead of the console."""

    def __init__(self, console: TextIO, path: Path) -> None:
        self._console = console
        self._path = path
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.startswith(EMF_PREFIX):
                _append(self._path, line)
            else:
                self._console.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending and not self._pending.startswith(EMF_PREFIX[: len(self._pending)]):
            self._console.write(self._pending)
            self._pending = ""
        self._console.flush()


def send_emf_to(path: Path) -> None:
    provider: Any = metrics.provider

    def flush_metrics(raise_on_empty_metrics: bool = False) -> None:
        if not provider.metric_set and not raise_on_empty_metrics:
            return
        record = json.dumps(provider.serialize_metric_set(), separators=(",", ":"))
        provider.clear_metrics()
        _append(path, record)

    provider.flush_metrics = flush_metrics
    sys.stdout = _EmfLinesToFile(sys.stdout, path)
