"""EMF metric records to a file instead of the console.

In Lambda, Powertools prints each function's metrics as one EMF JSON line on stdout, where
CloudWatch Logs picks them up. Locally that line would drown the console, so each function
container (slotguard_local.container) sends the same records to `<home>/metrics.jsonl` (one JSON
object a line, appended), where they stay inspectable, e.g. `tail -f .local/metrics.jsonl`. An
invocation that emitted no metric writes nothing (Powertools would warn about it, which nobody can
act on locally). Every container appends to the one file: each record is one write(2) to a file
opened with O_APPEND, so records of different containers never interleave.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from slotguard.observability import metrics


def send_emf_to(path: Path) -> None:
    provider: Any = metrics.provider

    def flush_metrics(raise_on_empty_metrics: bool = False) -> None:
        if not provider.metric_set and not raise_on_empty_metrics:
            return
        record = json.dumps(provider.serialize_metric_set(), separators=(",", ":"))
        provider.clear_metrics()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (record + "\n").encode())
        finally:
            os.close(fd)

    provider.flush_metrics = flush_metrics
