"""Function containers as OS processes, the way Lambda runs a function: each container is its own
interpreter (slotguard_local.container) that imported the handler once (its cold start: process
spawn + handler import) and then runs one invocation at a time; a pool keeps the warm ones and
starts more on demand, up to the function's concurrency.

A request that finds every warm container busy starts a new one (while the pool is below its
concurrency) and is served by whichever container is free first: the new one once it is ready, or
a warm one that finished sooner. On AWS each environment initialises on its own CPU; here they
share the machine's cores, so at most `ColdStarts` inits run at once (a burst at a cold pool of 20
would otherwise stall every request for seconds while 20 interpreters import at once). Beyond the
concurrency a request waits for a free container (API Gateway would get a throttle from Lambda;
locally a burst is queued, so a load test measures the system rather than the throttle).

Errors come back as Lambda reports them: the handler raised (the container stays, as in Lambda),
the invocation timed out (the container is killed), the container died (it is replaced), the
handler could not be imported (the container is discarded). The front door turns each into API
Gateway's 500; a poller into a failed batch.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from slotguard_local.container import ACCEPTED
from slotguard_local.events import LambdaContext


class FunctionError(RuntimeError):
    """An invocation that produced no answer of the function's own."""


class HandlerError(FunctionError):
    """The handler raised (the error document the runtime reported is `.error`)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('errorType')}: {error.get('errorMessage')}")
        self.error = error


class InitError(HandlerError):
    """The container failed its init (the handler's import raised)."""


class FunctionTimedOut(FunctionError):
    """The invocation ran past the function's timeout: its container was killed."""


class ContainerCrashed(FunctionError):
    """The container's process died during the invocation."""


class NotStarted(ContainerCrashed):
    """The container died before it took the event (killed while idle): the handler never ran."""


# An idle container takes an event at once; this long only for one the machine's load starves
ACCEPT_TIMEOUT_S = 30.0


class ColdStarts:
    """How many containers may initialise at once, across every pool of a stack. A function's first
    container goes before any function's next ones: a function with none cannot answer at all,
    whereas one scaling up is answering already."""

    def __init__(self, at_once: int | None = None) -> None:
        self.at_once = at_once or max(2, os.cpu_count() or 2)
        self._cond = threading.Condition()
        self._running = 0
        self._first_waiting = 0

    @contextmanager
    def slot(self, *, first: bool) -> Iterator[None]:
        with self._cond:
            self._first_waiting += first
            try:
                while self._running >= self.at_once or (not first and self._first_waiting):
                    self._cond.wait()
            finally:
                self._first_waiting -= first
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()  # a few dozen cold starts at most wait here


class Container:
    """One container process and the pool's end of its socket."""

    def __init__(self, name: str, handler_py: Path, env: Mapping[str, str], init_timeout_s: float) -> None:
        ours, theirs = socket.socketpair()
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "slotguard_local.container",
                    name,
                    str(handler_py),
                    str(theirs.fileno()),
                    str(os.getpid()),
                ],
                env=dict(env),
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        self.pid = self.proc.pid
        self._conn = Connection(ours.detach())
        try:
            hello = self._receive(init_timeout_s)
        except FunctionError:
            self.kill()
            raise
        if "init_error" in hello:
            self.kill()
            raise InitError(hello["init_error"])
        self.init_ms = float(hello.get("init_ms", 0))
        self.cold_start_ms = (time.monotonic() - started) * 1000

    def _receive(self, timeout_s: float) -> dict[str, Any]:
        try:
            if not self._conn.poll(max(0.0, timeout_s)):
                self.kill()
                raise FunctionTimedOut(f"no answer within {timeout_s:.1f}s")
            message: dict[str, Any] = json.loads(self._conn.recv_bytes())
        except (EOFError, OSError) as exc:
            self.kill()
            raise ContainerCrashed(f"container {self.pid} exited ({self.proc.poll()})") from exc
        return message

    @property
    def alive(self) -> bool:
        """An idle container that has not died (it never speaks unasked: readable means closed)."""
        if self.proc.poll() is not None:
            return False
        try:
            return not self._conn.poll(0)
        except OSError:
            return False

    def invoke(self, event: dict[str, Any], context: dict[str, Any], timeout_s: float) -> Any:
        """The handler's answer; NotStarted when the container died before taking the event (it
        never reached the handler: another container may run it), ContainerCrashed after."""
        try:
            self._conn.send_bytes(json.dumps({"event": event, "context": context}).encode())
            if not self._conn.poll(ACCEPT_TIMEOUT_S) or self._conn.recv_bytes() != ACCEPTED:
                raise OSError("the container did not take the event")
        except (EOFError, OSError) as exc:
            self.kill()
            raise NotStarted(f"container {self.pid} is gone ({self.proc.poll()})") from exc
        answer = self._receive(timeout_s)
        if "error" in answer:
            raise HandlerError(answer["error"])
        return answer.get("result")

    def close(self) -> None:
        """End of input: an idle container exits at once."""
        with suppress(OSError):
            self._conn.close()

    def kill(self) -> None:
        self.close()
        with suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


@dataclass
class PoolStats:
    cold_starts: int = 0
    cold_start_ms: float = 0.0  # in total: spawn, interpreter start, handler import
    invocations: int = 0
    errors: int = 0
    timeouts: int = 0
    crashes: int = 0
    max_live: int = 0


@dataclass
class ContainerPool:
    """The warm containers of one function, at most `concurrency` of them."""

    name: str
    handler_py: Path
    env: Mapping[str, str]
    concurrency: int
    timeout_s: float
    memory_mb: int = 512
    cold_starts: ColdStarts = field(default_factory=ColdStarts)
    init_timeout_s: float = 60.0  # Lambda's init phase gets at most 10 s; this machine is slower
    stats: PoolStats = field(default_factory=PoolStats)
    _free: list[Container] = field(default_factory=list)
    _busy: set[Container] = field(default_factory=set)
    _starting: int = 0
    _waiting: int = 0
    _init_errors: list[Exception] = field(default_factory=list)
    _closed: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def pids(self) -> list[int]:
        with self._cond:
            return sorted(c.pid for c in [*self._free, *self._busy])

    def _live(self) -> int:
        return len(self._free) + len(self._busy)

    def _acquire(self) -> Container:
        with self._cond:
            self._waiting += 1
            try:
                while True:
                    if self._closed:
                        raise FunctionError(f"{self.name}: the stack is stopping")
                    while self._free:
                        container = self._free.pop()  # the most recently used: the warmest
                        if container.alive:
                            self._busy.add(container)
                            return container
                        container.kill()  # died while idle (killed, crashed): replaced on demand
                    if self._init_errors:  # a cold start failed: one waiting request reports it
                        raise self._init_errors.pop(0)
                    # More requests wait than containers are starting: start one, room permitting
                    if self._starting < self._waiting and self._live() + self._starting < self.concurrency:
                        self._starting += 1
                        threading.Thread(
                            target=self._cold_start, name=f"{self.name}-cold-start", daemon=True
                        ).start()
                    self._cond.wait()
            finally:
                self._waiting -= 1

    def _cold_start(self) -> None:
        container: Container | None = None
        error: Exception | None = None
        with self._cond:
            first = self._live() == 0
        try:
            with self.cold_starts.slot(first=first):
                if not self._closed:
                    container = Container(self.name, self.handler_py, self.env, self.init_timeout_s)
        except Exception as exc:
            error = exc
        with self._cond:
            self._starting -= 1
            if container is not None:
                if self._closed:
                    container.kill()
                else:
                    self._free.append(container)
                    self.stats.cold_starts += 1
                    self.stats.cold_start_ms += container.cold_start_ms
                    self.stats.max_live = max(self.stats.max_live, self._live())
            elif error is not None and self._waiting:
                self._init_errors.append(error)
            # One waiter takes the new container or reports the error (never all of them: a
            # burst has hundreds waiting, and waking each on every change costs more than the work)
            self._cond.notify()

    def _release(self, container: Container, *, reusable: bool) -> None:
        with self._cond:
            self._busy.discard(container)
            keep = reusable and not self._closed
            if keep:
                self._free.append(container)
            self._cond.notify()  # a container is free, or there is room for a new one
        if not keep:
            container.kill()

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.name,
            memory_limit_in_mb=self.memory_mb,
            timeout_ms=int(self.timeout_s * 1000),
            _deadline=time.monotonic() + self.timeout_s,
        )

    # The pool enforces the function's timeout itself (it kills the container): an SQS event source
    # need not time the invocation out on its own.
    enforces_timeout = True

    def invoke(self, event: dict[str, Any], context: LambdaContext | None = None) -> Any:
        """Run one invocation in a free (or new) container; its answer, or a FunctionError. The
        timeout counts from the moment a container has the event (as in Lambda, a cold start's
        init is not part of the invocation's time)."""
        context = context or self.context()
        for _ in range(3):  # a container found dead when handed the event is replaced (twice at most)
            try:
                return self._invoke_once(event, context)
            except NotStarted:
                continue
        return self._invoke_once(event, context)

    def _invoke_once(self, event: dict[str, Any], context: LambdaContext) -> Any:
        container = self._acquire()
        remaining_ms = context.timeout_ms
        fields = {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "timeout_ms": context.timeout_ms,
            "remaining_ms": remaining_ms,
        }
        reusable = False
        try:
            result = container.invoke(event, fields, remaining_ms / 1000)
            reusable = True
            return result
        except HandlerError:
            reusable = True  # the runtime caught it: the environment is kept
            with self._cond:
                self.stats.errors += 1
            raise
        except FunctionTimedOut:
            with self._cond:
                self.stats.timeouts += 1
            raise
        except ContainerCrashed:
            with self._cond:
                self.stats.crashes += 1
            raise
        finally:
            with self._cond:
                self.stats.invocations += 1
            self._release(container, reusable=reusable)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        """The pool as a Lambda handler (what an SQS event source invokes)."""
        return self.invoke(event, context if isinstance(context, LambdaContext) else None)

    def close(self, timeout_s: float = 3.0) -> None:
        """Stop every container: idle ones exit at their end of input, the rest are killed."""
        self.finish_close(self.begin_close(), time.monotonic() + timeout_s)

    def begin_close(self) -> list[Container]:
        """Refuse new invocations and tell every container to exit (idle ones do at once)."""
        with self._cond:
            self._closed = True
            containers = [*self._free, *self._busy]
            self._free.clear()
            self._cond.notify_all()
        for container in containers:
            container.close()
        return containers

    @staticmethod
    def finish_close(containers: list[Container], deadline: float) -> None:
        """Wait for them until the deadline; kill what is left."""
        for container in containers:
            try:
                container.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                container.kill()
