"""The five webhook-metrics endpoints on seeded data whose answers are known, redrive, org
isolation, validation; real Postgres, SQS on moto's server."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slotguard_local.functions import load_function
from tests.conftest import ApiClient, new_org
from tests.webhook_support import Pipeline


def seed(
    admin: Any,
    org: str,
    event_type: str,
    status: str,
    *,
    ms: int | None = None,
    age_min: float = 10,
    error: str | None = None,
    attempts: int = 1,
    data: Any = None,
) -> str:
    job = f"job_{uuid.uuid4().hex[:10]}"
    admin.execute(
        """INSERT INTO slotguard.webhook_delivery_log
             (org_id, job_id, event_type, event_data, status, attempts, max_attempts, created_at,
              last_attempt_at, completed_at, processing_ms, error_message)
           VALUES (%s, %s, %s, %s, %s, %s, 3, now() - %s * interval '1 minute',
                   now() - %s * interval '1 minute' + interval '1 second',
                   CASE WHEN %s = 'completed'
                        THEN now() - %s * interval '1 minute' + interval '2 seconds' END,
                   %s, %s)""",
        (
            org,
            job,
            event_type,
            json.dumps(data or {"type": event_type, "data": {"n": 1}}),
            status,
            attempts,
            age_min,
            age_min,
            status,
            age_min,
            ms,
            error,
        ),
    )
    return job


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks: PostgreSQL's percentile_cont."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@pytest.fixture
def metrics_fn(pipeline: Pipeline) -> Any:
    return load_function("metrics")


@pytest.fixture
def seeded(admin_conn: Any) -> dict[str, Any]:
    org = new_org()
    book_ms = [12, 15, 20, 40, 90, 7]
    for ms in book_ms:
        seed(admin_conn, org.org_id, "appointment.book", "completed", ms=ms, age_min=30)
    seed(admin_conn, org.org_id, "appointment.cancel", "completed", ms=5, age_min=30)
    seed(admin_conn, org.org_id, "appointment.cancel", "completed", ms=9, age_min=3 * 60)  # outside 1h
    seed(admin_conn, org.org_id, "appointment.book", "failed", ms=3, age_min=20, error="busy", attempts=2)
    dead = [
        seed(
            admin_conn,
            org.org_id,
            "appointment.book",
            "dead_letter",
            ms=4,
            age_min=m,
            error=f"boom {m}",
            attempts=3,
        )
        for m in (40, 50)
    ]
    seed(admin_conn, org.org_id, "appointment.book", "completed", ms=1000, age_min=3 * 24 * 60)  # 3 days ago
    return {
        "org": org,
        "book_ms": book_ms,
        "dead": dead,
        "seed_other": lambda org_id: seed(
            admin_conn, org_id, "appointment.book", "completed", ms=33, age_min=20
        ),
    }


def test_delivery_stats_1h_exact(metrics_fn: Any, seeded: dict[str, Any]) -> None:
    api = ApiClient(metrics_fn, seeded["org"].member)
    res = api.get("/webhook-metrics/delivery-stats", query={"range": "1h"})
    assert res.status == 200, res.body
    totals = res.body["totals"]
    assert (totals["total"], totals["completed"], totals["failed"], totals["dead_letter"]) == (10, 7, 1, 2)
    assert totals["success_rate"] == 0.7
    by_type = {t["event_type"]: t for t in res.body["by_event_type"]}
    book = by_type["appointment.book"]
    assert (book["total"], book["completed"], book["failed"], book["dead_letter"]) == (9, 6, 1, 2)
    assert book["success_rate"] == round(6 / 9, 4)
    assert book["avg_processing_ms"] == round(sum(seeded["book_ms"]) / 6, 2)
    assert by_type["appointment.cancel"]["total"] == 1
    # 5-minute buckets over the hour; their totals add up, and each row falls in one bucket
    trend = res.body["trend"]
    assert 12 <= len(trend) <= 13
    assert sum(b["total"] for b in trend) == 10
    assert sum(b["dead_letter"] for b in trend) == 2
    assert res.body["bucket"] == "300s"


def test_delivery_stats_ranges_include_older_rows(metrics_fn: Any, seeded: dict[str, Any]) -> None:
    api = ApiClient(metrics_fn, seeded["org"].member)
    day = api.get("/webhook-metrics/delivery-stats", query={"range": "24h"}).body
    week = (
        api.get("/webhook-metrics/delivery-stats").body
        if False
        else api.get("/webhook-metrics/delivery-stats", query={"range": "7d"}).body
    )
    assert day["totals"]["total"] == 11
    assert len(day["trend"]) in (24, 25)
    assert week["totals"]["total"] == 12
    assert sum(b["total"] for b in week["trend"]) == 12
    default = api.get("/webhook-metrics/delivery-stats").body
    assert default["range"] == "24h"


def test_processing_time_percentiles_match_an_independent_computation(
    metrics_fn: Any, seeded: dict[str, Any]
) -> None:
    api = ApiClient(metrics_fn, seeded["org"].member)
    res = api.get("/webhook-metrics/processing-time", query={"range": "1h"})
    assert res.status == 200
    completed = [*seeded["book_ms"], 5]
    overall = res.body["overall"]
    assert overall["count"] == len(completed)
    for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        assert overall[key] == pytest.approx(percentile(completed, q), abs=0.01)
    assert overall["max"] == 90
    assert overall["avg"] == pytest.approx(sum(completed) / len(completed), abs=0.01)
    book = next(t for t in res.body["by_event_type"] if t["event_type"] == "appointment.book")
    assert book["p95"] == pytest.approx(percentile(seeded["book_ms"], 0.95), abs=0.01)
    assert book["count"] == 6
    # And the trend holds the org's completions in the range, in 5-minute buckets (the org's only:
    # another org's completions are not counted)
    other = new_org()
    seed_org_completion = seeded["seed_other"]
    seed_org_completion(other.org_id)
    trend = api.get("/webhook-metrics/processing-time", query={"range": "1h"}).body["trend"]
    assert sum(b["count"] for b in trend) == len(completed)
    starts = [datetime.fromisoformat(b["bucket_start"]) for b in trend]
    assert {later - earlier for earlier, later in itertools.pairwise(starts)} == {timedelta(minutes=5)}
    assert (
        datetime.now(UTC) - timedelta(hours=1, minutes=5, seconds=30)  # (the database's clock, read earlier)
        < starts[0]
        < datetime.now(UTC) - timedelta(minutes=55)
    )


def test_recent_failures_and_dead_letter_queue(metrics_fn: Any, seeded: dict[str, Any]) -> None:
    api = ApiClient(metrics_fn, seeded["org"].member)
    failures = api.get("/webhook-metrics/recent-failures", query={"limit": 2}).body
    assert failures["total"] == 3
    assert [f["status"] for f in failures["items"]] == ["failed", "dead_letter"]  # newest first
    assert failures["items"][0]["error_message"] == "busy"
    assert failures["items"][0]["attempts"] == 2
    assert "event_data" not in failures["items"][0]
    # (recent failures never carry payloads: not even the note that one was left out)
    assert all(f.get("event_data_omitted") is None for f in failures["items"])
    dlq = api.get("/webhook-metrics/dead-letter-queue").body
    assert dlq["total"] == 2
    assert [d["job_id"] for d in dlq["items"]] == seeded["dead"]
    # Payloads are personal data: a member sees ids, types, errors and counts, not event_data
    assert all("event_data" not in d for d in dlq["items"])
    admin = ApiClient(metrics_fn, seeded["org"].admin).get("/webhook-metrics/dead-letter-queue").body
    assert [d["job_id"] for d in admin["items"]] == seeded["dead"]
    assert admin["items"][0]["event_data"]["data"] == {"n": 1}


def test_the_dead_letter_queue_lists_at_most_limit_newest_first_and_counts_them_all(
    metrics_fn: Any, seeded: dict[str, Any]
) -> None:
    # Given an org with two dead letters (and other failed and completed deliveries)
    org = seeded["org"]
    # When a member and an admin list its dead letters with limit=1
    member = ApiClient(metrics_fn, org.member).get("/webhook-metrics/dead-letter-queue", query={"limit": 1})
    admin = ApiClient(metrics_fn, org.admin).get("/webhook-metrics/dead-letter-queue", query={"limit": 1})
    # Then each gets only the newest one, and the total of both
    for res in (member, admin):
        assert res.status == 200, res.body
        assert res.body["total"] == 2
        assert [d["job_id"] for d in res.body["items"]] == seeded["dead"][:1]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/webhook-metrics/delivery-stats", {"range": "2h"}),
        ("/webhook-metrics/processing-time", {"range": "1y"}),
        ("/webhook-metrics/recent-failures", {"limit": 0}),
        ("/webhook-metrics/recent-failures", {"limit": 101}),
        ("/webhook-metrics/dead-letter-queue", {"limit": "many"}),
    ],
)
def test_invalid_range_or_limit_is_422_with_allowed_values(
    metrics_fn: Any, path: str, query: dict[str, Any]
) -> None:
    res = ApiClient(metrics_fn, new_org().member).get(path, query=query)
    assert res.status == 422
    message = json.dumps(res.body["error"]["details"])
    if "range" in query:
        assert all(v in message for v in ("1h", "24h", "7d", "30d"))


def test_empty_org_answers_zeros(metrics_fn: Any) -> None:
    api = ApiClient(metrics_fn, new_org().member)
    stats = api.get("/webhook-metrics/delivery-stats", query={"range": "1h"}).body
    assert stats["totals"] == {
        "total": 0,
        "completed": 0,
        "failed": 0,
        "dead_letter": 0,
        "in_progress": 0,
        "success_rate": 0,
        "avg_processing_ms": 0,
        "outcomes": {"applied": 0, "refused": 0, "ignored": 0, "invalid": 0},
    }
    assert stats["by_event_type"] == []
    assert all(b["total"] == 0 for b in stats["trend"])
    times = api.get("/webhook-metrics/processing-time").body
    assert times["overall"] == {"count": 0, "p50": 0, "p95": 0, "p99": 0, "avg": 0, "max": 0}
    assert api.get("/webhook-metrics/recent-failures").body == {"total": 0, "items": []}
    assert api.get("/webhook-metrics/dead-letter-queue").body == {"total": 0, "items": []}


def test_org_b_never_sees_org_a(metrics_fn: Any, seeded: dict[str, Any]) -> None:
    other = ApiClient(metrics_fn, new_org().admin)
    assert other.get("/webhook-metrics/delivery-stats", query={"range": "30d"}).body["totals"]["total"] == 0
    assert other.get("/webhook-metrics/processing-time", query={"range": "30d"}).body["overall"]["count"] == 0
    assert other.get("/webhook-metrics/recent-failures").body["total"] == 0
    assert other.get("/webhook-metrics/dead-letter-queue").body["total"] == 0
    assert other.get("/webhook-metrics/queue-health").body["org"]["dead_letter"] == 0
    assert other.post("/webhook-metrics/dead-letter-queue/redrive", json_body={}).body["redriven"] == 0
    mine = ApiClient(metrics_fn, seeded["org"].member)
    assert mine.get("/webhook-metrics/dead-letter-queue").body["total"] == 2


def test_auth_401_and_member_403_on_redrive(metrics_fn: Any, seeded: dict[str, Any]) -> None:
    assert ApiClient(metrics_fn, None).get("/webhook-metrics/queue-health").status == 401
    res = ApiClient(metrics_fn, seeded["org"].member).post(
        "/webhook-metrics/dead-letter-queue/redrive", json_body={}
    )
    assert res.status == 403
    assert res.body["error"]["code"] == "forbidden"
    assert res.body["error"]["message"] == "this action needs the admin role"
    dlq = ApiClient(metrics_fn, seeded["org"].member).get("/webhook-metrics/dead-letter-queue").body
    assert dlq["total"] == 2


def test_queue_health_reports_queues_worker_and_org(metrics_fn: Any, pipeline: Pipeline) -> None:
    org_id, secret = pipeline.new_org()
    api = ApiClient(metrics_fn, {"sub": "u", "org_id": org_id, "role": "admin"})
    metrics_fn.service.queue_health_cache_s = 0  # every answer read afresh here
    # Given no worker has ever reported
    cold = api.get("/webhook-metrics/queue-health").body
    assert cold["status"] == "unhealthy"
    assert cold["worker"]["state"] == "Unavailable"
    # Given a running poller, two waiting messages and one in the DLQ
    source = pipeline.event_source(batch_size=7, max_concurrency=3)
    source.write_state()
    for _ in range(2):
        pipeline.send(org_id, secret, "invoice.paid", {})
    pipeline.sqs.send_message(QueueUrl=pipeline.queues.dlq_url, MessageBody="{}")
    res = api.get("/webhook-metrics/queue-health")
    assert res.status == 200
    body = res.body
    assert body["queue"]["waiting"] == 2
    assert body["queue"]["in_flight"] == 0
    assert body["dead_letter_queue"]["depth"] == 1
    assert body["worker"] == {
        "state": "Enabled",
        "batch_size": 7,
        "maximum_concurrency": 3,
        "batching_window_s": 0.0,
        "last_processing_result": "No records processed",
        "source": "local-poller",
    }
    assert body["status"] == "degraded"
    assert "1 message in the dead-letter queue" in body["reasons"]
    assert body["org"]["dead_letter"] == 0


def test_admin_redrive_reprocesses_to_completed_and_is_audited(metrics_fn: Any, pipeline: Pipeline) -> None:
    # Given a webhook dead-lettered because its handler kept failing
    broken = {"on": True}

    def sometimes(ctx: Any, data: Any) -> Any:
        from slotguard.services.webhook_events import Outcome, RetriableFailure

        if broken["on"]:
            raise RetriableFailure("dependency down")
        return Outcome("applied")

    pipeline.customize.append(lambda service: service.register("test.dep", sometimes))
    org_id, secret = pipeline.new_org()
    job = pipeline.send(org_id, secret, "test.dep", {"x": 1})
    source = pipeline.event_source()
    pipeline.drain(
        source,
        lambda: pipeline.rows(org_id)[0]["status"] == "dead_letter" if pipeline.rows(org_id) else False,
    )
    # When the dependency is back and an admin redrives it
    broken["on"] = False
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    res = admin.post(
        "/webhook-metrics/dead-letter-queue/redrive", json_body={"job_ids": [job, "no-such-job"]}
    )
    assert res.status == 200, res.body
    assert res.body == {"redriven": 1, "job_ids": [job], "not_sent": [], "next_after": None}
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"]) == ("pending", 3)
    # Then it is processed again and ends completed, its attempts kept
    pipeline.drain(source, lambda: pipeline.rows(org_id)[0]["status"] == "completed")
    [row] = pipeline.rows(org_id)
    assert row["attempts"] == 4
    # And the redrive is recorded with who and when
    history = metrics_fn.service.redrive_history(uuid.UUID(org_id), job)
    assert [(h["actor"], h["attempts"]) for h in history] == [("user:ops", 3)]
    assert datetime.fromisoformat(history[0]["at"]) > datetime.now(UTC) - timedelta(minutes=1)
    # A second redrive finds nothing left to redrive
    assert admin.post("/webhook-metrics/dead-letter-queue/redrive", json_body={}).body["redriven"] == 0


def test_members_see_their_orgs_part_and_admins_the_shared_queues_too(
    metrics_fn: Any, pipeline: Pipeline
) -> None:
    # Given a running worker and a message on the shared dead-letter queue (some org's)
    org_id, _ = pipeline.new_org()
    pipeline.event_source().write_state()
    pipeline.sqs.send_message(QueueUrl=pipeline.queues.dlq_url, MessageBody="{}")
    member = ApiClient(metrics_fn, {"sub": "m", "org_id": org_id}).get("/webhook-metrics/queue-health")
    admin = ApiClient(metrics_fn, {"sub": "a", "org_id": org_id, "role": "admin"}).get(
        "/webhook-metrics/queue-health"
    )
    # Then a member gets the status, the worker and the org's own deliveries, not the shared depths
    assert member.status == admin.status == 200
    assert member.body["queue"] is None and member.body["dead_letter_queue"] is None
    assert member.body["org"] == admin.body["org"]
    assert member.body["status"] == admin.body["status"] == "degraded"
    assert "messages in the dead-letter queue" in member.body["reasons"]
    assert "1 message in the dead-letter queue" not in member.body["reasons"]
    # And an admin gets the queue depths as well
    assert admin.body["dead_letter_queue"]["depth"] == 1
    assert "1 message in the dead-letter queue" in admin.body["reasons"]


class Counting:
    """The real queue, counting the calls that reach SQS."""

    def __init__(self, queue: Any) -> None:
        self._queue, self.calls, self.url = queue, 0, queue.url

    def depth(self) -> Any:
        self.calls += 1
        return self._queue.depth()


def test_queue_health_reads_the_shared_state_at_most_once_every_few_seconds(
    metrics_fn: Any, pipeline: Pipeline
) -> None:
    # Given the metrics function on real queues, and a clock
    org_id, _ = pipeline.new_org()
    service = metrics_fn.service
    now = [1000.0]
    service.clock = lambda: now[0]
    queue = service._queue = Counting(service._queue)
    api = ApiClient(metrics_fn, {"sub": "a", "org_id": org_id, "role": "admin"})
    # When queue-health is asked for three times within its cache time
    answers = [api.get("/webhook-metrics/queue-health") for _ in range(3)]
    # Then SQS (and CloudWatch, the Lambda API) were asked once
    assert [a.status for a in answers] == [200] * 3
    assert queue.calls == 1
    assert 1 <= service.queue_health_cache_s <= 10
    # And once it has passed, again
    now[0] += service.queue_health_cache_s + 0.1
    api.get("/webhook-metrics/queue-health")
    assert queue.calls == 2


def test_a_throttled_lambda_api_does_not_call_the_system_unhealthy() -> None:
    import boto3
    from botocore.stub import Stubber

    from slotguard.aws.workers import EventSourceMappingState

    # Given the event source mapping's state read through Lambda's API, which throttles
    lam = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    mapping = "00000000-0000-0000-0000-000000000001"
    with Stubber(lam) as stub:
        stub.add_client_error("get_event_source_mapping", "TooManyRequestsException", http_status_code=429)
        stub.add_response(
            "get_event_source_mapping",
            {"UUID": mapping, "State": "Enabled", "BatchSize": 10, "LastProcessingResult": "OK"},
            {"UUID": mapping},
        )
        stub.add_client_error("get_event_source_mapping", "TooManyRequestsException", http_status_code=429)
        source = EventSourceMappingState(mapping, lam)
        # When the first read is throttled: the state is unknown (not "Unavailable": nothing says the
        # worker stopped)
        first = source.read()
        assert first.state == "Unknown"
        assert first.last_processing_result == "TooManyRequestsException"
        # And a later throttled read answers the last state read, saying so
        assert source.read().state == "Enabled"
        again = source.read()
        assert again.state == "Enabled"
        assert "TooManyRequestsException" in again.source


def test_an_unknown_worker_state_degrades_the_health_and_a_stopped_one_makes_it_unhealthy(
    metrics_fn: Any, pipeline: Pipeline
) -> None:
    from slotguard.aws.workers import WorkerState

    org_id, _ = pipeline.new_org()
    service = metrics_fn.service
    service.queue_health_cache_s = 0
    api = ApiClient(metrics_fn, {"sub": "a", "org_id": org_id, "role": "admin"})
    for state, status in (("Unknown", "degraded"), ("Disabled", "unhealthy"), ("Unavailable", "unhealthy")):

        class Fixed:
            def read(self, state: str = state) -> WorkerState:
                return WorkerState(state=state, source="lambda")

        service._workers = Fixed()
        assert api.get("/webhook-metrics/queue-health").body["status"] == status, state
