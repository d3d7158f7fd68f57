"""The local stack's function containers are OS processes, as in Lambda: a pool of warm ones per
function up to its concurrency, one invocation at a time each, replaced when one dies. Real
processes throughout, running probe handlers written here."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from slotguard.topology import RESERVED_CONCURRENCY, Route
from slotguard_local.containers import (
    ContainerCrashed,
    ContainerPool,
    FunctionTimedOut,
    HandlerError,
    InitError,
)
from slotguard_local.events import http_api_event
from slotguard_local.frontdoor import FrontDoor, JwtAuthorizer, JwtSettings
from slotguard_local.functions import concurrency, function_environment

PROBE = """
import os, time

def lambda_handler(event, context):
    started = time.time()
    action = event.get("action")
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "raise":
        raise ValueError("the probe failed")
    elif action == "exit":
        os._exit(3)
    elif action == "env":
        return {"env": dict(os.environ)}
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "started": started,
        "ended": time.time(),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"""


def _handler(tmp_path: Path, name: str, code: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    path = folder / "handler.py"
    path.write_text(textwrap.dedent(code))
    return path


@pytest.fixture
def pools(tmp_path: Path) -> Iterator[Any]:
    made: list[ContainerPool] = []

    def make(code: str = PROBE, *, concurrency: int = 4, timeout_s: float = 20, **env: str) -> ContainerPool:
        pool = ContainerPool(
            "probe",
            _handler(tmp_path, f"probe{len(made)}", code),
            {**os.environ, **env},
            concurrency=concurrency,
            timeout_s=timeout_s,
        )
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _wait_dead(pid: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not _dead(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.02)


def test_two_concurrent_invocations_run_in_two_container_processes(pools: Any) -> None:
    # Given a function's pool, no container started yet
    pool = pools()
    assert pool.pids == []
    # When two invocations arrive at once, each taking a while
    with ThreadPoolExecutor(2) as ex:
        answers = list(ex.map(lambda _: pool.invoke({"action": "sleep", "seconds": 0.5}), range(2)))
    # Then each ran in its own process, a child of this one (not a thread of it)
    pids = {a["pid"] for a in answers}
    assert len(pids) == 2
    assert os.getpid() not in pids
    assert {a["ppid"] for a in answers} == {os.getpid()}
    # And both containers stay warm for the next invocations
    assert sorted(pids) == pool.pids
    # And each got a Lambda context of its own
    assert len({a["request_id"] for a in answers}) == 2
    assert {a["function_name"] for a in answers} == {"probe"}
    assert all(0 < a["remaining_ms"] <= 20_000 for a in answers)


def test_a_container_runs_one_invocation_at_a_time_and_the_pool_stays_within_its_concurrency(
    pools: Any,
) -> None:
    # Given a pool of at most 3 containers
    pool = pools(concurrency=3)
    # When 12 invocations arrive at once
    with ThreadPoolExecutor(12) as ex:
        answers = list(ex.map(lambda _: pool.invoke({"action": "sleep", "seconds": 0.2}), range(12)))
    # Then every one was answered, by at most 3 processes
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for a in answers:
        by_pid.setdefault(a["pid"], []).append((a["started"], a["ended"]))
    assert 1 <= len(by_pid) <= 3
    assert pool.stats.max_live <= 3
    # And no process ever ran two invocations at once
    for spans in by_pid.values():
        spans.sort()
        for (_, ended), (started, _) in itertools.pairwise(spans):
            assert started >= ended


def test_a_killed_container_is_replaced_by_a_new_process(pools: Any) -> None:
    # Given a warm container
    pool = pools(concurrency=1)
    first = pool.invoke({})["pid"]
    # When its process is killed
    os.kill(first, signal.SIGKILL)
    _wait_dead(first)
    # Then the next invocation is still answered, by a new process
    second = pool.invoke({})["pid"]
    assert second != first
    assert pool.pids == [second]


def test_a_container_that_dies_during_an_invocation_fails_it_and_is_replaced(pools: Any) -> None:
    pool = pools(concurrency=1)
    first = pool.invoke({})["pid"]
    # When the handler's process exits in the middle of an invocation
    with pytest.raises(ContainerCrashed):
        pool.invoke({"action": "exit"})
    # Then that invocation failed, and the next one runs in a new container
    assert pool.invoke({})["pid"] != first
    assert pool.stats.crashes == 1


def test_a_handler_error_fails_the_invocation_and_keeps_the_container(pools: Any) -> None:
    pool = pools(concurrency=1)
    first = pool.invoke({})["pid"]
    # When the handler raises
    with pytest.raises(HandlerError) as raised:
        pool.invoke({"action": "raise"})
    # Then the error comes back as the runtime reports it
    assert raised.value.error["errorType"] == "ValueError"
    assert raised.value.error["errorMessage"] == "the probe failed"
    # And, as in Lambda, the environment is kept for the next invocation
    assert pool.invoke({})["pid"] == first


def test_an_invocation_past_the_timeout_kills_its_container(pools: Any) -> None:
    pool = pools(concurrency=1, timeout_s=1)
    first = pool.invoke({})["pid"]
    # When an invocation runs past the function's timeout
    started = time.monotonic()
    with pytest.raises(FunctionTimedOut):
        pool.invoke({"action": "sleep", "seconds": 30})
    # Then it fails at the timeout, its process is killed, and a new one takes the next
    assert time.monotonic() - started < 5
    _wait_dead(first)
    assert pool.invoke({})["pid"] != first


def test_a_handler_that_cannot_be_imported_fails_the_invocation(pools: Any) -> None:
    pool = pools("raise RuntimeError('bad config')\n")
    with pytest.raises(InitError) as raised:
        pool.invoke({})
    assert "bad config" in raised.value.error["errorMessage"]
    assert pool.pids == []


def test_each_container_resolves_its_own_event(pools: Any, tmp_path: Path) -> None:
    # Given a Powertools resolver (it keeps the event being resolved on a class, one slot per
    # process) whose first request waits in its handler until a second one has been resolved
    gate = tmp_path / "gate"
    gate.mkdir()
    pool = pools(
        f"""
        import os, time
        from pathlib import Path
        from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

        app = APIGatewayHttpResolver()
        GATE = Path({str(gate)!r})

        @app.get("/who/<who>")
        def who(who):
            if who == "a":
                (GATE / "a-in-handler").touch()
                deadline = time.time() + 10
                while not (GATE / "b-done").exists() and time.time() < deadline:
                    time.sleep(0.01)
            return {{"who": who, "path": app.current_event.path, "pid": os.getpid()}}

        def lambda_handler(event, context):
            return app.resolve(event, context)
        """
    )
    answers: dict[str, Any] = {}

    def ask(who: str) -> None:
        answers[who] = json.loads(pool.invoke(http_api_event("GET", f"/who/{who}"))["body"])

    # When the second request is resolved while the first is in its handler
    first = threading.Thread(target=ask, args=("a",))
    first.start()
    deadline = time.monotonic() + 30
    while not (gate / "a-in-handler").exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ask("b")
    (gate / "b-done").touch()
    first.join(30)
    # Then each handler read its own request's event, in its own process
    assert {k: (v["who"], v["path"]) for k, v in answers.items()} == {
        "a": ("a", "/who/a"),
        "b": ("b", "/who/b"),
    }
    assert answers["a"]["pid"] != answers["b"]["pid"]


def test_metrics_of_concurrent_containers_never_mix(pools: Any, tmp_path: Path) -> None:
    # Given containers whose Powertools metrics go to one file (as the stack's do)
    emf = tmp_path / "metrics.jsonl"
    pool = pools(
        """
        import os, time
        from aws_lambda_powertools.metrics import MetricUnit
        from slotguard.observability import metrics

        @metrics.log_metrics
        def lambda_handler(event, context):
            metrics.add_metadata(key="invocation", value=event["n"])
            metrics.add_metadata(key="pid", value=os.getpid())
            metrics.add_metric(name="Probe", unit=MetricUnit.Count, value=1)
            time.sleep(0.05)
            metrics.add_metric(name="ProbeLatency", unit=MetricUnit.Milliseconds, value=event["n"])
            return {"pid": os.getpid()}
        """,
        concurrency=4,
        SLOTGUARD_EMF_FILE=str(emf),
    )
    # When 40 invocations run, up to 4 at once
    with ThreadPoolExecutor(8) as ex:
        pids = {a["pid"] for a in ex.map(lambda n: pool.invoke({"n": n}), range(40))}
    assert len(pids) >= 2
    # Then the file holds one record per invocation, each with that invocation's metrics only
    records = [json.loads(line) for line in emf.read_text().splitlines()]
    assert sorted(r["invocation"] for r in records) == list(range(40))
    for record in records:
        assert record["Probe"] == [1.0]  # never [1.0, 1.0]: two invocations in one record
        assert record["ProbeLatency"] == [float(record["invocation"])]
        assert record["pid"] in pids


def test_the_front_door_answers_a_failed_function_like_api_gateway(pools: Any) -> None:
    # Given a front door whose route is served by containers of a function
    pool = pools(
        """
        import json, os

        def lambda_handler(event, context):
            action = event["rawPath"].strip("/")
            if action == "raise":
                raise RuntimeError("boom")
            if action == "exit":
                os._exit(1)
            return {"statusCode": 200, "body": json.dumps({"pid": os.getpid()})}
        """,
        concurrency=1,
    )
    routes = tuple(Route("GET", f"/{a}", "probe", authorized=False) for a in ("ok", "raise", "exit"))
    door = FrontDoor(routes, {"probe": pool}, JwtAuthorizer(JwtSettings("s" * 32, "i", "a")), b"{}", port=0)
    door.start()
    host, port = door.url.removeprefix("http://").split(":")

    def get(path: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    try:
        status, first = get("/ok")
        assert status == 200
        # When the handler raises, then when its container dies mid-request
        # Then each is API Gateway's 500, never a hang or a reset connection
        assert get("/raise") == (500, {"message": "Internal Server Error"})
        assert get("/exit") == (500, {"message": "Internal Server Error"})
        # And the next request is answered by a new container
        status, second = get("/ok")
        assert status == 200
        assert second["pid"] != first["pid"]
    finally:
        door.stop()


def test_closing_a_pool_stops_its_containers_quickly(pools: Any) -> None:
    pool = pools(concurrency=3)
    with ThreadPoolExecutor(3) as ex:
        pids = {
            a["pid"] for a in ex.map(lambda _: pool.invoke({"action": "sleep", "seconds": 0.3}), range(3))
        }
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 3
    for pid in pids:
        _wait_dead(pid, 2)


def test_each_function_gets_its_own_config_environment_and_concurrency() -> None:
    settings = {
        "DATABASE_URL": "postgresql://app@127.0.0.1:1/slotguard",
        "WEBHOOK_QUEUE_URL": "http://127.0.0.1:1/000000000000/q",
        "WEBHOOK_SECRET_PREFIX": "slotguard/webhooks/",
    }
    base = {"DATABASE_URL": "postgresql://superuser@127.0.0.1:1/slotguard", "AWS_REGION": "us-east-1"}
    # When the booking function's and the receiver's container environments are made
    booking = function_environment("booking", settings, base)
    receiver = function_environment("webhook_receiver", settings, base)
    # Then each has what its typed config reads and nothing another function's reads
    assert booking["DATABASE_URL"] == settings["DATABASE_URL"]  # the app's, never the superuser's
    assert "WEBHOOK_QUEUE_URL" not in booking
    assert receiver["WEBHOOK_QUEUE_URL"] == settings["WEBHOOK_QUEUE_URL"]
    assert "DATABASE_URL" not in receiver
    assert booking["POWERTOOLS_SERVICE_NAME"] == "booking"
    assert receiver["AWS_REGION"] == "us-east-1"
    # And a function whose config cannot be met fails here, not in a container
    with pytest.raises(ValueError, match=r"webhook_dlq_url"):
        function_environment("metrics", settings, base)
    # And the pools are as large as the CDK stage's reserved concurrency
    assert concurrency("booking") == RESERVED_CONCURRENCY["dev"].booking
    assert concurrency("metrics") == RESERVED_CONCURRENCY["dev"].metrics


def test_a_batch_past_the_timeout_kills_its_container_and_stays_queued(pools: Any, aws: str) -> None:
    import boto3

    from slotguard_local.poller import SqsEventSource
    from tests.conftest import make_queues

    # Given an SQS event source whose function (containers as processes) hangs on a batch
    sqs = boto3.client("sqs")
    queues = make_queues(sqs, max_receive_count=10, visibility_timeout_s=30)
    hanging = pools(
        """
        import time

        def lambda_handler(event, context):
            time.sleep(60)
        """,
        concurrency=1,
        timeout_s=1,
    )
    sqs.send_message(QueueUrl=queues.main_url, MessageBody="{}")
    source = SqsEventSource(
        sqs, queues.main_url, lambda: hanging, function_name="probe", function_timeout_s=1
    )
    # When it polls the batch
    started = time.monotonic()
    assert source.poll_once([None], wait_time_s=1) == 1
    # Then the invocation fails at the function's timeout and its container is killed, as in Lambda
    # (a thread could not be: it would keep running beside its replacement)
    assert time.monotonic() - started < 10
    assert (source.stats.timeouts, source.stats.deleted) == (1, 0)
    assert hanging.pids == []
    assert hanging.stats.timeouts == 1
    # And the message stays on the queue, for SQS to redeliver
    assert queues.depth(sqs) == 1
