"""Booking benchmarks, each beside a baseline of the same run: the handler vs the bare SQL call vs
a plain INSERT of the same row (sequential); and, with one process per client as Lambda runs one
per container, the SQL function vs plain and exclusion-only INSERTs on distinct calendars, on one
calendar in time order, and at one hot slot."""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

import psycopg

from bench.common import TABLE, BenchDb, bench_database, progress, run_processes, time_each
from slotguard_local.events import LambdaContext, http_api_event
from slotguard_local.functions import load_function

N = int(os.environ.get("BENCH_N", "1000"))
SLOTS = int(os.environ.get("BENCH_SLOTS", "4000"))
PROCESSES = int(os.environ.get("BENCH_PROCESSES", "32"))
BASE = datetime(2035, 1, 1, tzinfo=UTC)
PLAIN_TABLE = """CREATE TABLE IF NOT EXISTS public.bench_plain_appointments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), org_id uuid, contact_id uuid, resource_id uuid,
    scheduled_at timestamptz, ends_at timestamptz, duration_minutes int, notes text, metadata jsonb,
    created_by text)"""
PLAIN_INSERT = """INSERT INTO public.bench_plain_appointments
    (org_id, contact_id, resource_id, scheduled_at, ends_at, duration_minutes, notes, metadata, created_by)
    VALUES (%s, %s, %s, %s, %s, %s, NULL, '{}', 'bench')"""
# The same row into the real table, as the administrator: the exclusion constraint and nothing else
# (no advisory lock, no audit row, no function).
EXCLUSION_ONLY_INSERT = """INSERT INTO slotguard.appointments
    (org_id, contact_id, resource_id, scheduled_at, ends_at, duration_minutes, notes, metadata, created_by)
    VALUES (%s, %s, %s, %s, %s, %s, NULL, '{}', 'bench')"""
BOOK = (
    "SELECT slotguard.book_appointment_with_lock(%s, 'bench', %s, %s, %s, %s, NULL, '{}', NULL, NULL, 4000)"
)


def slot(i: int, minutes: int = 10) -> datetime:
    return BASE + timedelta(minutes=minutes * i)


def _offset(op: Callable[[int], None], start: int, i: int) -> None:
    op(start + i)


def _ratio(x: float, base: float) -> str:
    return f"{x / base:.2f}x"


def sequential(db: BenchDb) -> None:
    os.environ["DATABASE_URL"] = db.app_url
    handler = load_function("booking")
    org_h, org_s, org_p = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    claims = {"sub": "bench", "org_id": str(org_h)}
    ctx = LambdaContext()

    def via_handler(i: int) -> None:
        body = {"contact_id": str(uuid.uuid4()), "scheduled_at": slot(i).isoformat(), "duration_minutes": 10}
        out = handler.lambda_handler(
            http_api_event(
                "POST",
                "/appointments",
                headers={"content-type": "application/json"},
                body=json.dumps(body),
                claims=claims,
            ),
            ctx,
        )
        assert out["statusCode"] == 201, out

    with (
        psycopg.connect(db.app_url, autocommit=True, prepare_threshold=None) as app_conn,
        psycopg.connect(db.admin_url, autocommit=True, prepare_threshold=None) as admin_conn,
    ):
        admin_conn.execute(PLAIN_TABLE)

        def via_sql(i: int) -> None:
            out = app_conn.execute(
                "SELECT slotguard.book_appointment_with_lock(%s, 'bench', %s, NULL, %s, 10)",
                (org_s, uuid.uuid4(), slot(i)),
            ).fetchone()
            assert out and out[0]["status"] == "created"

        org_x = uuid.uuid4()

        def via_exclusion_only(i: int) -> None:
            admin_conn.execute(
                EXCLUSION_ONLY_INSERT,
                (org_x, uuid.uuid4(), None, slot(i), slot(i) + timedelta(minutes=10), 10),
            )

        def via_insert(i: int) -> None:
            admin_conn.execute(
                PLAIN_INSERT, (org_p, uuid.uuid4(), None, slot(i), slot(i) + timedelta(minutes=10), 10)
            )

        for warm in range(20):  # connections, caches, first-call costs
            via_handler(N + warm)
            via_sql(N + warm)
            via_insert(N + warm)
            via_exclusion_only(N + warm)
        # Interleaved in rounds of 100, so a burst of load on the shared machine hits all three alike.
        plain_s: list[float] = []
        bare_s: list[float] = []
        full_s: list[float] = []
        excl_s: list[float] = []
        for start in range(0, N, 100):
            paths: tuple[tuple[list[float], Callable[[int], None]], ...] = (
                (plain_s, via_insert),
                (excl_s, via_exclusion_only),
                (bare_s, via_sql),
                (full_s, via_handler),
            )
            for samples, op in paths:
                t = time_each("", min(100, N - start), functools.partial(_offset, op, start))
                samples.extend(t.samples_ms)

    plain, bare, full, excl = median(plain_s), median(bare_s), median(full_s), median(excl_s)
    TABLE.add(
        f"sequential: bare `book_appointment_with_lock()` call vs plain INSERT (median, {N} each)",
        f"{bare:.3f} ms",
        f"plain INSERT {plain:.3f} ms (exclusion-only INSERT into the real table: {excl:.3f} ms,"
        f" {excl / plain:.2f}x)",
        _ratio(bare, plain),
        "<= 2.5x",
    )
    TABLE.add(
        f"sequential: booking handler (event -> 201) vs bare SQL call (median, {N} each)",
        f"{full:.3f} ms",
        f"bare SQL {bare:.3f} ms",
        _ratio(full, bare),
        "<= 1.3x",
    )


def _status(row: Any) -> str:
    return str(row[0]["status"])


def concurrent(db: BenchDb) -> None:
    p = PROCESSES
    with psycopg.connect(db.admin_url, autocommit=True) as admin:
        admin.execute(PLAIN_TABLE)

    def rows(org: uuid.UUID, n: int, distinct_calendars: bool) -> list[tuple[Any, ...]]:
        return [
            (
                org,
                uuid.uuid4(),
                uuid.uuid4() if distinct_calendars else None,
                slot(i),
                slot(i) + timedelta(minutes=10),
                10,
            )
            for i in range(n)
        ]

    def booking_jobs(org: uuid.UUID, n: int, distinct_calendars: bool) -> list[tuple[Any, ...]]:
        return [(o, c, r, s, m) for o, c, r, s, _, m in rows(org, n, distinct_calendars)]

    # 1. distinct calendars: nothing contends but the database itself.
    progress(f"concurrent: {N} bookings on distinct calendars, {p} processes")
    plain = run_processes(db.admin_url, PLAIN_INSERT, rows(uuid.uuid4(), N, True), p)
    floor = run_processes(db.admin_url, EXCLUSION_ONLY_INSERT, rows(uuid.uuid4(), N, True), p)
    fn = run_processes(db.app_url, BOOK, booking_jobs(uuid.uuid4(), N, True), p, _status)
    assert fn.outcomes == {"created": N}, fn.outcomes
    TABLE.add(
        f"`book_appointment_with_lock()` vs plain INSERT, {p} processes, {N} distinct calendars",
        f"{fn.rate:.0f}/s",
        f"plain INSERT {plain.rate:.0f}/s (exclusion-only INSERT into the real table: {floor.rate:.0f}/s,"
        f" {floor.rate / plain.rate:.2f}x)",
        _ratio(fn.rate, plain.rate),
        ">= 0.7x",
    )

    # 2. one calendar, distinct 10-minute slots in time order: six per hour stripe contend.
    progress(f"concurrent: {SLOTS} slots of one calendar in time order, {p} processes")
    excl = run_processes(db.admin_url, EXCLUSION_ONLY_INSERT, rows(uuid.uuid4(), SLOTS, False), p)
    one = run_processes(db.app_url, BOOK, booking_jobs(uuid.uuid4(), SLOTS, False), p, _status)
    assert one.outcomes == {"created": SLOTS}, one.outcomes
    TABLE.add(
        f"same, one calendar, {SLOTS} distinct 10-minute slots in time order, vs exclusion-only INSERT",
        f"{one.rate:.0f}/s",
        f"exclusion-only INSERT {excl.rate:.0f}/s",
        _ratio(one.rate, excl.rate),
        ">= 0.7x",
    )

    # 3. the hot slot: 1000 attempts at one hour of one calendar.
    progress(f"concurrent: 1000 attempts at one slot, {p} processes")
    org = uuid.uuid4()
    hot = run_processes(db.app_url, BOOK, [(org, uuid.uuid4(), None, BASE, 60)] * 1000, p, _status)
    with psycopg.connect(db.admin_url, autocommit=True) as admin:
        stored = admin.execute(
            "SELECT count(*) FROM slotguard.appointments WHERE org_id = %s", (org,)
        ).fetchone()
    assert hot.outcomes == {"created": 1, "conflict": 999}, hot.outcomes
    assert stored and stored[0] == 1, stored
    answer = ", ".join(f"{v} {k}" for k, v in sorted(hot.outcomes.items()))
    TABLE.add(
        f"hot slot, 1000 attempts at one slot, {p} processes",
        f"{answer}; 0 deadlocks, 0 busy; {hot.rate:.0f} answers/s",
        f"plain INSERT {plain.rate:.0f}/s",
        _ratio(hot.rate, plain.rate),
        "1 winner, 999 x 409, 0 deadlocks, 0 busy, >= 0.5x",
    )


def main() -> None:
    with bench_database() as db:
        sequential(db)
        concurrent(db)


if __name__ == "__main__":
    main()
