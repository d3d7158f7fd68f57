"""Booking benchmark: the handler vs the bare SQL function vs a plain INSERT of the same row;
a hot slot with 1000 concurrent attempts; 1000 distinct slots of one calendar at once."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import BenchDb, bench_database, report, time_each
from slotguard.config import DatabaseSettings
from slotguard.db.booking_repository import BookingRepository
from slotguard.db.connection import Database
from slotguard.errors import Busy, SlotConflict
from slotguard.models import Actor, BookRequest
from slotguard.services.booking import BookingService
from slotguard_local.events import LambdaContext, http_api_event
from slotguard_local.functions import load_function

N = int(os.environ.get("BENCH_N", "1000"))
CONNECTIONS = 32
BASE = datetime(2035, 1, 1, tzinfo=UTC)
PLAIN_TABLE = """CREATE TABLE IF NOT EXISTS public.bench_plain_appointments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), org_id uuid, contact_id uuid, resource_id uuid,
    scheduled_at timestamptz, ends_at timestamptz, duration_minutes int, notes text, metadata jsonb,
    created_by text)"""
PLAIN_INSERT = """INSERT INTO public.bench_plain_appointments
    (org_id, contact_id, resource_id, scheduled_at, ends_at, duration_minutes, notes, metadata, created_by)
    VALUES (%s, %s, NULL, %s, %s, %s, NULL, '{}', 'bench')"""


def slot(i: int, minutes: int = 10) -> datetime:
    return BASE + timedelta(minutes=minutes * i)


def sequential(db: BenchDb) -> None:
    os.environ["DATABASE_URL"] = db.app_url
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
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

        def via_insert(i: int) -> None:
            admin_conn.execute(
                PLAIN_INSERT, (org_p, uuid.uuid4(), slot(i), slot(i) + timedelta(minutes=10), 10)
            )

        for warm in range(20):  # connections, caches, first-call costs
            via_handler(N + warm)
            via_sql(N + warm)
            via_insert(N + warm)
        plain = time_each("plain INSERT of the same row", N, via_insert)
        bare = time_each("book_appointment_with_lock() bare SQL call", N, via_sql)
        full = time_each("booking handler (event -> 201)", N, via_handler)
    report(f"Sequential booking, one connection, {N} distinct slots each", [full, bare, plain], plain)


def _run_concurrent(url: str, jobs: list[tuple[Actor, datetime, int]]) -> tuple[Counter[str], float]:
    local = threading.local()

    def service() -> BookingService:
        if not hasattr(local, "svc"):
            local.svc = BookingService(
                BookingRepository(Database(DatabaseSettings(database_url=url)), 10_000)
            )
            local.svc._repo._db._connection()
        svc: BookingService = local.svc
        return svc

    def one(job: tuple[Actor, datetime, int]) -> str:
        who, start, minutes = job
        try:
            service().book(
                who, BookRequest(contact_id=uuid.uuid4(), scheduled_at=start, duration_minutes=minutes)
            )
            return "created"
        except SlotConflict:
            return "conflict"
        except Busy:
            return "busy"

    with ThreadPoolExecutor(CONNECTIONS) as ex:
        barrier = threading.Barrier(CONNECTIONS)
        list(ex.map(lambda _: (service(), barrier.wait()), range(CONNECTIONS)))
        t0 = time.perf_counter()
        outcomes = Counter(ex.map(one, jobs))
        return outcomes, time.perf_counter() - t0


def _plain_concurrent(url: str, n: int) -> float:
    local = threading.local()
    org = uuid.uuid4()

    def conn() -> psycopg.Connection[Any]:
        if not hasattr(local, "c"):
            local.c = psycopg.connect(url, autocommit=True, prepare_threshold=None)
        c: psycopg.Connection[Any] = local.c
        return c

    with ThreadPoolExecutor(CONNECTIONS) as ex:
        barrier = threading.Barrier(CONNECTIONS)
        list(ex.map(lambda _: (conn(), barrier.wait()), range(CONNECTIONS)))
        t0 = time.perf_counter()
        list(
            ex.map(
                lambda i: conn().execute(
                    PLAIN_INSERT, (org, uuid.uuid4(), slot(i), slot(i) + timedelta(minutes=10), 10)
                ),
                range(n),
            )
        )
        return time.perf_counter() - t0


def concurrent(db: BenchDb) -> None:
    plain_s = _plain_concurrent(db.admin_url, N)
    plain_rate = N / plain_s
    hot_actor = Actor(org_id=uuid.uuid4(), subject="bench")
    hot, hot_s = _run_concurrent(db.app_url, [(hot_actor, BASE, 60)] * 1000)
    spread_actor = Actor(org_id=uuid.uuid4(), subject="bench")
    spread, spread_s = _run_concurrent(db.app_url, [(spread_actor, slot(i), 10) for i in range(1000)])
    print(f"\nConcurrent, {CONNECTIONS} connections")
    print(f"  plain INSERT baseline: {N} rows in {plain_s:.2f}s = {plain_rate:.0f}/s")
    print(
        f"  hot slot, 1000 attempts at one slot: {dict(hot)} in {hot_s:.2f}s = {1000 / hot_s:.0f} answers/s"
        f" ({1000 / hot_s / plain_rate:.2f}x plain INSERT rate)"
    )
    print(
        f"  1000 distinct slots, one calendar: {dict(spread)} in {spread_s:.2f}s = {1000 / spread_s:.0f}/s"
        f" ({1000 / spread_s / plain_rate:.2f}x plain INSERT rate)"
    )
    assert hot == {"created": 1, "conflict": 999}, hot
    assert spread == {"created": 1000}, spread


def main() -> None:
    with bench_database() as db:
        sequential(db)
        concurrent(db)


if __name__ == "__main__":
    main()
