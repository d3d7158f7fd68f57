"""Where the webhook workers' state comes from: the Lambda event source mapping (AWS) or the
state file the local stack's poller writes (same fields)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from slotguard.aws.clients import client, error_reason


class WorkerState(BaseModel):
    state: str  # Enabled | Disabled | Creating | ... | Unavailable (stopped) | Unknown (not readable now)
    batch_size: int | None = None
    maximum_concurrency: int | None = None
    batching_window_s: float | None = None
    last_processing_result: str | None = None
    source: str


class WorkerStateSource(Protocol):
    def read(self) -> WorkerState: ...


class EventSourceMappingState:
    """The mapping's state from Lambda's control plane (GetEventSourceMapping). That API throttles
    at a low rate: a failed read answers the last state read, saying so in `source`, or "Unknown"
    before any succeeded (never "Unavailable": nothing says the worker stopped)."""

    def __init__(self, mapping_uuid: str, lambda_client: Any | None = None) -> None:
        self._uuid = mapping_uuid
        self._lambda_client = lambda_client
        self._last: WorkerState | None = None

    @property
    def _lambda(self) -> Any:
        if self._lambda_client is None:
            self._lambda_client = client("lambda")
        return self._lambda_client

    def read(self) -> WorkerState:
        try:
            m = self._lambda.get_event_source_mapping(UUID=self._uuid)
        except Exception as exc:
            reason = error_reason(exc)
            if self._last is not None:
                return self._last.model_copy(update={"source": f"lambda (last read; now {reason})"})
            return WorkerState(state="Unknown", source=f"lambda:{self._uuid}", last_processing_result=reason)
        self._last = WorkerState(
            state=m.get("State", "Unknown"),
            batch_size=m.get("BatchSize"),
            maximum_concurrency=(m.get("ScalingConfig") or {}).get("MaximumConcurrency"),
            batching_window_s=m.get("MaximumBatchingWindowInSeconds"),
            last_processing_result=m.get("LastProcessingResult"),
            source="lambda",
        )
        return self._last


class PollerStateFile:
    """The local poller rewrites this file every few seconds; a stale file means it stopped."""

    STALE_AFTER_S = 30

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def read(self) -> WorkerState:
        try:
            data = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return WorkerState(state="Unavailable", source="local-poller")
        state = data.get("state", "Unknown")
        if time.time() - float(data.get("updated_at", 0)) > self.STALE_AFTER_S:
            state = "Unavailable"
        return WorkerState(
            state=state,
            batch_size=data.get("batch_size"),
            maximum_concurrency=data.get("maximum_concurrency"),
            batching_window_s=data.get("batching_window_s"),
            last_processing_result=data.get("last_result"),
            source="local-poller",
        )


def worker_state_source(spec: str) -> WorkerStateSource:
    kind, _, value = spec.partition(":")
    if kind == "lambda":
        return EventSourceMappingState(value)
    return PollerStateFile(value)
