"""1,000 webhooks through the whole pipeline while 30 % of handler runs fail at random and
the database goes away for a while: every webhook ends as exactly one completed or
dead_letter row, and every booking is made exactly once."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest

from slotguard.services.webhook_events import EventContext, Outcome, RetriableFailure
from tests.conftest import PgInstance, make_queues
from tests.webhook_support import Pipeline

N = 1000
MAX_ATTEMPTS = 8
FAIL_BEFORE = 0.15  # of all handler runs: a failure before the effect
FAIL_AFTER = 0.15  # of all handler runs: a failure after it (rolled back with it)


def dead_letter_bound(n: int, p_fail: float, attempts: int, false_alarm: float = 1e-6) -> int:
    """The most webhooks that may end dead when each attempt fails independently with p_fail and
    a webhook is given up after `attempts` failed attempts: the count is Binomial(n, p_fail**attempts),
    here bounded by the smallest k whose Poisson tail P(X > k) is below `false_alarm`."""
    lam = n * p_fail**attempts
    k, term, cdf = 0, math.exp(-lam), math.exp(-lam)
    while 1 - cdf >= false_alarm:
        k += 1
        term *= lam / k
        cdf += term
    return k


def test_1000_webhooks_with_random_failures_and_a_database_outage(
    pg: PgInstance, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pg.stop is None:
        pytest.skip("needs the embedded server, which the test can stop (DATABASE_URL is external)")
    from slotguard.topology import redrive_max_receive_count

    # Given queues with the deployed redrive (a backstop above the attempt budget), and processors
    # whose book handler fails 30 % of the time (half before, half after its effect: both must
    # leave no trace)
    queues = make_queues(
        pipeline.sqs, max_receive_count=redrive_max_receive_count(MAX_ATTEMPTS), visibility_timeout_s=2
    )
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", queues.main_url)
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", str(MAX_ATTEMPTS))
    monkeypatch.setenv("WEBHOOK_SECRET_CACHE_S", "300")
    p = Pipeline(
        sqs=pipeline.sqs, queues=queues, secret_prefix=pipeline.secret_prefix, admin_url=pg.admin_url
    )
    rng = random.Random(2026)
    rng_lock = threading.Lock()
    injected = Counter[str]()

    def roll() -> float:
        with rng_lock:
            return rng.random()

    def customize(service: Any) -> None:
        real = service._handlers["appointment.book"]

        def flaky_book(ctx: EventContext, data: Any) -> Outcome:
            if roll() < FAIL_BEFORE:
                injected["before"] += 1
                raise RetriableFailure("injected failure before the effect")
            outcome: Outcome = real(ctx, data)
            if roll() < FAIL_AFTER / (1 - FAIL_BEFORE):
                injected["after"] += 1
                raise RetriableFailure("injected failure after the effect")
            return outcome

        service.register("appointment.book", flaky_book)

    p.customize.append(customize)
    org_id, secret = p.new_org()
    jobs: list[str] = []

    def send_all() -> None:  # webhooks arrive while the pipeline runs, as in production
        for i in range(N):
            day, half_hour = divmod(i, 48)
            start = f"2033-01-{1 + day:02d}T{half_hour // 2:02d}:{30 * (half_hour % 2):02d}:00Z"
            jobs.append(
                p.send(
                    org_id,
                    secret,
                    "appointment.book",
                    {"contact_id": str(uuid.uuid4()), "scheduled_at": start, "duration_minutes": 30},
                )
            )

    def terminal() -> int:
        with psycopg.connect(pg.admin_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM slotguard.webhook_delivery_log WHERE org_id = %s"
                " AND status IN ('completed', 'dead_letter')",
                (org_id,),
            ).fetchone()
            return int(row[0]) if row else 0

    # When the processors and the reconciler run, and the database is down for 3 seconds midway
    processor, reconciler = p.event_source(batch_size=10, max_concurrency=4), p.dlq_source()
    processor.start()
    reconciler.start()
    t0 = time.monotonic()
    sender = threading.Thread(target=send_all)
    sender.start()
    outage_done = False
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                done = terminal()
            except psycopg.OperationalError:
                done = 0
            if not outage_done and done >= N // 3:
                print(f"outage at {time.monotonic() - t0:.1f}s")
                pg.stop(mode="immediate")
                time.sleep(3)
                pg.start()
                outage_done = True
            if (
                outage_done
                and done == N
                and queues.depth(p.sqs) == 0
                and queues.depth(p.sqs, queues.dlq_url) == 0
            ):
                break
            time.sleep(0.5)
    finally:
        sender.join()
        processor.stop()
        reconciler.stop()
    print(f"settled at {time.monotonic() - t0:.1f}s")
    assert outage_done
    # Then every webhook is exactly one terminal row
    rows = p.rows(org_id)
    assert len(jobs) == N
    assert len(set(jobs)) == N
    assert len(rows) == N
    assert {r["job_id"] for r in rows} == set(jobs)
    statuses = Counter(r["status"] for r in rows)
    assert set(statuses) <= {"completed", "dead_letter"}, statuses
    # And every completed booking exists exactly once, made by its webhook; dead letters made none
    appointments = p.appointments(org_id)
    makers = Counter(a["created_by"] for a in appointments)
    assert all(n == 1 for n in makers.values())
    applied = {
        f"webhook:{r['job_id']}" for r in rows if r["status"] == "completed" and r["outcome"] == "applied"
    }
    assert set(makers) == applied
    # And the dead letters are only what the fault rate makes likely: webhooks whose every attempt
    # failed (each spent the whole budget), no more than an attempt failing FAIL_BEFORE + FAIL_AFTER
    # of the time, independently, leaves dead after MAX_ATTEMPTS (expected 0.07 of 1,000; bound 3)
    dead = [r for r in rows if r["status"] == "dead_letter"]
    assert all(r["attempts"] == MAX_ATTEMPTS for r in dead), [(r["attempts"], r["outcome"]) for r in dead]
    bound = dead_letter_bound(N, FAIL_BEFORE + FAIL_AFTER, MAX_ATTEMPTS)
    assert bound == 3
    assert len(dead) <= bound, (len(dead), bound, [r["error_message"] for r in dead][:5])
    # And the failures really happened and were retried
    assert injected["before"] > 50
    assert injected["after"] > 50
    assert sum(r["attempts"] for r in rows) > N
    print(
        f"\nstatuses={dict(statuses)} injected={dict(injected)} invocations={processor.stats.invocations}"
        f" failed_invocations={processor.stats.failed_invocations}"
    )


def test_a_database_outage_longer_than_the_old_receive_budget_dead_letters_nothing(
    pg: PgInstance, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slotguard.topology import redrive_max_receive_count

    if pg.stop is None:
        pytest.skip("needs the embedded server, which the test can stop (DATABASE_URL is external)")
    # Given compressed timings: 3 attempts, backoff base 1 s capped at 2 s, visibility 2 s. With
    # maxReceiveCount = attempts (3), a message that meets a database outage at every receive was
    # dead-lettered after at most (2 + 2) s of backoff plus two visibility timeouts: 8 s
    attempts, base_s, cap_s, visibility_s = 3, 1, 2, 2
    old_budget_s = (attempts - 1) * (cap_s + visibility_s)
    outage_s = 2 * old_budget_s
    queues = make_queues(
        pipeline.sqs, max_receive_count=redrive_max_receive_count(attempts), visibility_timeout_s=visibility_s
    )
    for key, value in {
        "WEBHOOK_QUEUE_URL": queues.main_url,
        "WEBHOOK_MAX_ATTEMPTS": str(attempts),
        "WEBHOOK_BACKOFF_BASE_S": str(base_s),
        "WEBHOOK_BACKOFF_CAP_S": str(cap_s),
    }.items():
        monkeypatch.setenv(key, value)
    p = Pipeline(
        sqs=pipeline.sqs, queues=queues, secret_prefix=pipeline.secret_prefix, admin_url=pg.admin_url
    )
    org_id, secret = p.new_org()
    jobs = [
        p.send(
            org_id,
            secret,
            "appointment.book",
            {
                "contact_id": str(uuid.uuid4()),
                "scheduled_at": f"2034-03-{1 + i // 20:02d}T{i % 20:02d}:00:00Z",
                "duration_minutes": 30,
            },
        )
        for i in range(40)
    ]
    processor, reconciler = p.event_source(batch_size=5, max_concurrency=2), p.dlq_source()
    # When the database goes down while the webhooks are being processed, for twice as long
    pg.stop(mode="immediate")
    processor.start()
    reconciler.start()
    try:
        time.sleep(outage_s)
        pg.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = p.rows(org_id)
            if (
                len(rows) == len(jobs)
                and all(r["status"] == "completed" for r in rows)
                and queues.depth(p.sqs) == 0
                and queues.depth(p.sqs, queues.dlq_url) == 0
            ):
                break
            time.sleep(0.5)
    finally:
        if not pg_is_up(pg):
            pg.start()
        processor.stop()
        reconciler.stop()
    # Then every webhook is completed and none is dead
    rows = p.rows(org_id)
    assert {r["job_id"] for r in rows} == set(jobs)
    assert Counter(r["status"] for r in rows) == {"completed": len(jobs)}
    assert queues.depth(p.sqs, queues.dlq_url) == 0
    # And the outage cost no application attempt: each was claimed once, when the database was back
    assert {r["attempts"] for r in rows} == {1}


def pg_is_up(pg: PgInstance) -> bool:
    try:
        with psycopg.connect(pg.admin_url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False
