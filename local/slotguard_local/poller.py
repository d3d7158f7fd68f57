"""An SQS event source mapping, as Lambda runs one: long-poll the queue, invoke the function
with a batch of real SQS records, delete what succeeded, leave the reported failures (and
the whole batch when the function raises or times out) for SQS to redeliver, which also
drives the queue's redrive policy. Up to `max_concurrency` invocations at once, each in
its own container; a container that timed out is replaced.

A container is whatever `new_container` returns: the local stack gives a ContainerPool of the
function (its containers are processes, one invocation at a time, killed when an invocation
times out: slotguard_local.containers); tests may give a handler loaded into their own process."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slotguard_local.containers import ContainerCrashed, FunctionTimedOut
from slotguard_local.events import LambdaContext, sqs_record
from slotguard_local.files import write_private

Invoke = Callable[[dict[str, Any], Any], Any]


@dataclass
class MappingStats:
    invocations: int = 0
    failed_invocations: int = 0
    timeouts: int = 0
    records: int = 0
    deleted: int = 0
    reported_failures: int = 0
    max_in_flight: int = 0
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SqsEventSource:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        new_container: Callable[[], Invoke],
        *,
        function_name: str,
        batch_size: int = 10,
        batching_window_s: float = 0.0,
        max_concurrency: int = 2,
        function_timeout_s: float = 30.0,
        wait_time_s: int = 1,
        enabled: bool = True,
        state_file: Path | None = None,
    ) -> None:
        self._sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._new_container = new_container
        self.function_name = function_name
        self.batch_size = batch_size
        self.batching_window_s = batching_window_s
        self.max_concurrency = max_concurrency
        self.function_timeout_s = function_timeout_s
        self._wait_time_s = wait_time_s
        self.stats = MappingStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.state = "Enabled" if enabled else "Disabled"
        self.state_file = state_file
        self.last_result = "No records processed"
        # Messages received and not deleted (a failed record, a failed or timed-out invocation),
        # by MessageId with their latest receipt: invisible in the queue until their visibility
        # timeout, so a stop of the in-memory emulator would lose them (release_unsettled).
        self._unsettled: dict[str, dict[str, Any]] = {}
        self._unsettled_lock = threading.Lock()

    # -- one poll, one invocation (deterministic, for tests) -------------------------------
    def poll_once(
        self, container: list[Invoke] | list[Invoke | None] | None = None, wait_time_s: int | None = None
    ) -> int:
        """One batch; `container` a one-item list holding the container (None: start one when a
        batch arrives), replaced there when the invocation timed out or its container died."""
        slot: list[Invoke | None] = list(container) if container is not None else [None]
        messages = self._receive(self._wait_time_s if wait_time_s is None else wait_time_s)
        if not messages:
            return 0
        self._invoke(slot, messages)
        if container is not None:
            container[:] = slot  # type: ignore[assignment]
        return len(messages)

    def _receive(self, wait_time_s: int) -> list[dict[str, Any]]:
        """Gather up to batch_size messages, waiting at most the batching window once any arrived."""
        deadline = time.monotonic() + self.batching_window_s
        batch: list[dict[str, Any]] = []
        while len(batch) < self.batch_size:
            got = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(batch)),
                WaitTimeSeconds=0 if batch else wait_time_s,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            batch.extend(got)
            if time.monotonic() >= deadline or (not got and not batch):
                break
            if not got:
                time.sleep(0.05)
        with self._unsettled_lock:
            for message in batch:
                self._unsettled.pop(message["MessageId"], None)
                self._unsettled[message["MessageId"]] = message
            while len(self._unsettled) > self.MAX_UNSETTLED:  # bounded: the oldest go first
                self._unsettled.pop(next(iter(self._unsettled)))
        return batch

    MAX_UNSETTLED = 10_000

    def release_unsettled(self) -> int:
        """Make every message this mapping received and did not delete visible again at once
        (ChangeMessageVisibility to 0), so that the stack, stopping, saves it with what is queued.
        One deleted since, moved to the dead-letter queue or received again elsewhere has a stale
        receipt: SQS refuses that one, and it is left as it is. Returns how many were released."""
        with self._unsettled_lock:
            pending = list(self._unsettled.values())
            self._unsettled.clear()
        released = 0
        for message in pending:
            try:
                self._sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
                released += 1
            except Exception:  # noqa: S112 - a stale receipt: nothing of ours to release
                continue
        return released

    def _invoke(self, slot: list[Invoke | None], messages: list[dict[str, Any]]) -> None:
        event = {"Records": [sqs_record(m, self.queue_arn) for m in messages]}
        outcome: dict[str, Any] = {}
        invoke = slot[0] if slot[0] is not None else self._new_container()
        slot[0] = invoke

        def run() -> None:
            try:
                outcome["response"] = invoke(
                    event,
                    LambdaContext(
                        function_name=self.function_name,
                        timeout_ms=int(self.function_timeout_s * 1000),
                        _deadline=time.monotonic() + self.function_timeout_s,
                    ),
                )
            except BaseException as exc:
                outcome["error"] = exc

        with self.stats.lock:
            self.stats.invocations += 1
            self.stats.records += len(messages)
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            worker = threading.Thread(target=run, name=f"{self.function_name}-invocation", daemon=True)
            worker.start()
            # A container pool times the invocation out itself (it kills the container and raises
            # FunctionTimedOut, its cold start not counted); a handler run in this process is
            # timed out here
            worker.join(None if getattr(invoke, "enforces_timeout", False) else self.function_timeout_s)
        finally:
            with self.stats.lock:
                self.stats.in_flight -= 1
        if worker.is_alive() or isinstance(outcome.get("error"), FunctionTimedOut):
            self.last_result = "PROBLEM: Function timed out"
            # Timed out: Lambda kills the container; nothing is deleted; a new container takes over.
            with self.stats.lock:
                self.stats.timeouts += 1
            slot[0] = None
            return
        if "error" in outcome:
            if isinstance(outcome["error"], ContainerCrashed):
                slot[0] = None  # Lambda replaces an environment whose runtime exited
            self.last_result = f"PROBLEM: Function call failed ({type(outcome['error']).__name__})"
            with self.stats.lock:
                self.stats.failed_invocations += 1
            return
        self.last_result = "OK"
        response = outcome.get("response") or {}
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        with self._unsettled_lock:
            for message in done:
                self._unsettled.pop(message["MessageId"], None)
        with self.stats.lock:
            self.stats.deleted += len(done)
            self.stats.reported_failures += len(failed)

    # -- continuous polling ----------------------------------------------------------------
    def write_state(self) -> None:
        """What the Lambda API reports of a mapping, for the metrics API (atomic replace)."""
        if self.state_file is None:
            return
        data = {
            "state": self.state,
            "batch_size": self.batch_size,
            "maximum_concurrency": self.max_concurrency,
            "batching_window_s": self.batching_window_s,
            "last_result": self.last_result,
            "updated_at": time.time(),
            "invocations": self.stats.invocations,
        }
        write_private(self.state_file, json.dumps(data))

    def start(self) -> None:
        self._stop.clear()
        self.state = "Enabled"
        self.write_state()
        reporter = threading.Thread(target=self._report, name=f"{self.function_name}-state", daemon=True)
        reporter.start()
        self._threads.append(reporter)
        for n in range(self.max_concurrency):
            thread = threading.Thread(target=self._loop, name=f"{self.function_name}-poller-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _report(self) -> None:
        while not self._stop.wait(2):
            self.write_state()

    def _loop(self) -> None:
        slot: list[Invoke | None] = [None]  # a container is started when the first batch comes
        while not self._stop.is_set():
            try:
                self.poll_once(slot)
            except Exception:
                time.sleep(0.5)

    def signal_stop(self) -> None:
        """Stop polling; an invocation under way finishes (stop() waits for it)."""
        self._stop.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
        self.state = "Disabled"
        self.write_state()
