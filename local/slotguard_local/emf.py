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
from datetime import UTC, datetime
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


class EmfToCloudWatch:
    """What CloudWatch does with a Lambda function's EMF log lines, for the local stack: a thread
    follows `metrics.jsonl` from where it ends at start and puts each record's metrics into the
    AWS emulator's CloudWatch (PutMetricData: the record's namespace, dimensions, timestamp, unit,
    values). So what reads CloudWatch (GET /booking-metrics) reads the figures locally too."""

    def __init__(self, path: Path, cloudwatch: Any, stop: Any, every_s: float = 0.5) -> None:
        self._path = path
        self._cw = cloudwatch
        self._stop = stop
        self._every_s = every_s
        self._offset = path.stat().st_size if path.exists() else 0

    def forward_once(self) -> int:
        """Put the records appended since the last call; how many metric values went."""
        if not self._path.exists():
            return 0
        with self._path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        sent = 0
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                sent += self._put(json.loads(line))
            except Exception as exc:  # a record the emulator refuses is skipped, as CloudWatch would
                sys.stderr.write(f"[slotguard] metrics record not forwarded: {type(exc).__name__}\n")
        return sent

    def _put(self, record: dict[str, Any]) -> int:
        aws = record["_aws"]
        timestamp = datetime.fromtimestamp(aws["Timestamp"] / 1000, UTC)
        sent = 0
        for directive in aws["CloudWatchMetrics"]:
            for dimension_set in directive.get("Dimensions") or [[]]:
                dimensions = [{"Name": d, "Value": str(record[d])} for d in dimension_set]
                data = []
                for metric in directive["Metrics"]:
                    raw: Any = record[metric["Name"]]
                    values: list[Any] = raw if isinstance(raw, list) else [raw]
                    data.append(
                        {
                            "MetricName": metric["Name"],
                            "Dimensions": dimensions,
                            "Timestamp": timestamp,
                            "Values": [float(v) for v in values],
                            "Unit": metric.get("Unit", "None"),
                        }
                    )
                    sent += len(values)
                for i in range(0, len(data), 20):
                    self._cw.put_metric_data(Namespace=directive["Namespace"], MetricData=data[i : i + 20])
        return sent

    def run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.forward_once()
            except Exception as exc:
                sys.stderr.write(f"[slotguard] metrics forwarding: {type(exc).__name__}\n")
