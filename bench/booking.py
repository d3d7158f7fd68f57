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
from pathlib import Path
from statistics import median
from typing import Any

import psycopg

from bench.common import TABLE, BenchDb, ConcurrentRun, bench_database, progress, run_processes, time_each
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
BOOK_0003 = BOOK.replace("book_appointment_with_lock", "bench_book_0003")
REFERENCE_START = "CREATE FUNCTION slotguard.book_appointment_with_lock("
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ROOT = Path(__file__).resolve().parents[1]


def slot(i: int, minutes: int = 10) -> datetime:
    return BASE + timedelta(minutes=minutes * i)


def _offset(op: Callable[[int], None], start: int, i: int) -> None:
    op(start + i)


def _ratio(x: float, base: float) -> str:
    return f"{x / base:.2f}x"


def _floor_function(handler: Any) -> Any:
    """The floor under the booking handler: the same decorators (logger context, metrics) around a
    plain Powertools resolver (no request validation, no models, no metrics added) whose one route
    makes the handler's own SQL call through the handler's own connection and answers its JSON
    text. What the handler costs above this is slotguard's own Python (validation, models,
    metrics, the answer)."""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

    from slotguard.observability import inject_http_api_context, metrics

    db = handler.service._repo._db
    resolver = APIGatewayHttpResolver()

    @resolver.post("/appointments")
    def book() -> Response[str]:
        body = resolver.current_event.json_body
        org = resolver.current_event.request_context.authorizer.jwt_claim["org_id"]
        out = db.scalar(HANDLER_BOOK, _handler_params(org, body["contact_id"], body["scheduled_at"]))
        return Response(201, "application/json", json.dumps(out["appointment"]))

    @inject_http_api_context
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return resolver.resolve(event, context)

    return lambda_handler


# The statement and parameters the booking handler sends (db/booking_repository.py).
HANDLER_BOOK = "SELECT slotguard.book_appointment_with_lock(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


def _handler_params(org: Any, contact: Any, at: Any) -> tuple[Any, ...]:
    from psycopg.types.json import Jsonb

    return (org, "user:bench", contact, None, at, 10, None, Jsonb({}), None, None, 3000)


def sequential(db: BenchDb) -> None:
    os.environ["DATABASE_URL"] = db.app_url
    handler = load_function("booking")
    floor = _floor_function(handler)
    org_h, org_s, org_p, org_f, org_d = (uuid.uuid4() for _ in range(5))
    claims = {"sub": "bench", "org_id": str(org_h)}
    floor_claims = {"sub": "bench", "org_id": str(org_f)}
    ctx = LambdaContext()

    def invoke(function: Any, who: dict[str, str], i: int) -> None:
        body = {"contact_id": str(uuid.uuid4()), "scheduled_at": slot(i).isoformat(), "duration_minutes": 10}
        out = function(
            http_api_event(
                "POST",
                "/appointments",
                headers={"content-type": "application/json"},
                body=json.dumps(body),
                claims=who,
            ),
            ctx,
        )
        assert out["statusCode"] == 201, out

    def via_handler(i: int) -> None:
        invoke(handler.lambda_handler, claims, i)

    def via_floor(i: int) -> None:
        invoke(floor, floor_claims, i)

    def via_handler_sql(i: int) -> None:
        out = handler.service._repo._db.scalar(HANDLER_BOOK, _handler_params(org_d, uuid.uuid4(), slot(i)))
        assert out["status"] == "created"

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

        org_x, org_r = uuid.uuid4(), uuid.uuid4()

        def via_sql_0003(i: int) -> None:
            out = app_conn.execute(
                "SELECT slotguard.bench_book_0003(%s, 'bench', %s, NULL, %s, 10)",
                (org_r, uuid.uuid4(), slot(i)),
            ).fetchone()
            assert out and out[0]["status"] == "created"

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
            via_floor(N + warm)
            via_handler_sql(N + warm)
            via_sql(N + warm)
            via_insert(N + warm)
            via_exclusion_only(N + warm)
            via_sql_0003(N + warm)
        # Interleaved in rounds of 100, so a burst of load on the shared machine hits all three alike.
        plain_s: list[float] = []
        bare_s: list[float] = []
        full_s: list[float] = []
        excl_s: list[float] = []
        ref_s: list[float] = []
        floor_s: list[float] = []
        handler_sql_s: list[float] = []
        for start in range(0, N, 100):
            paths: tuple[tuple[list[float], Callable[[int], None]], ...] = (
                (plain_s, via_insert),
                (excl_s, via_exclusion_only),
                (bare_s, via_sql),
                (ref_s, via_sql_0003),
                (full_s, via_handler),
                (handler_sql_s, via_handler_sql),
                (floor_s, via_floor),
            )
            for samples, op in paths:
                t = time_each("", min(100, N - start), functools.partial(_offset, op, start))
                samples.extend(t.samples_ms)

    plain, bare, full, excl = median(plain_s), median(bare_s), median(full_s), median(excl_s)
    ref, floor_ms, handler_sql = median(ref_s), median(floor_s), median(handler_sql_s)
    TABLE.add(
        f"sequential: bare `book_appointment_with_lock()` call vs plain INSERT (median, {N} each)",
        f"{bare:.3f} ms (0003's function: {ref:.3f} ms, {ref / plain:.2f}x)",
        f"plain INSERT {plain:.3f} ms (exclusion-only INSERT into the real table: {excl:.3f} ms,"
        f" {excl / plain:.2f}x)",
        _ratio(bare, plain),
        "<= 2.5x",
    )
    TABLE.add(
        f"sequential: booking handler (event -> 201) vs bare SQL call (median, {N} each)",
        f"{full:.3f} ms (floors beside it: the handler's own SQL call through its connection"
        f" {handler_sql:.3f} ms, {handler_sql / bare:.2f}x; that call under a plain Powertools resolver"
        f" with the same logger and metrics decorators {floor_ms:.3f} ms, {floor_ms / bare:.2f}x)",
        f"bare SQL {bare:.3f} ms",
        _ratio(full, bare),
        "<= 1.3x",
    )


def _status(row: Any) -> str:
    return str(row[0]["status"])


def install_reference(db: BenchDb) -> None:
    """0003's book_appointment_with_lock(), as it was before 0008, installed beside the current one as
    slotguard.bench_book_0003 (this throwaway database only): "before" measured in the same run."""
    text = (ROOT / "layers/slotguard/migrations/0003_booking_functions.sql").read_text()
    fn = text[text.index(REFERENCE_START) : text.index("CREATE FUNCTION slotguard.cancel_appointment(")]
    fn = fn.replace(REFERENCE_START, "CREATE FUNCTION slotguard.bench_book_0003(", 1)
    # Adapted to one thing only: today's _conflicts(), which it calls, answers a bounded object
    # ({conflicts, conflict_count, truncated}) rather than the array 0003's answered.
    fn = fn.replace(
        "IF jsonb_array_length(v_conflicts) > 0 THEN", "IF (v_conflicts->>'conflict_count')::integer > 0 THEN"
    )
    with psycopg.connect(db.admin_url, autocommit=True) as admin, admin.transaction():
        admin.execute("SET LOCAL ROLE slotguard_owner")
        admin.execute(fn.encode())
        admin.execute("RESET ROLE")
        admin.execute(
            "GRANT EXECUTE ON FUNCTION slotguard.bench_book_0003(uuid, text, uuid, uuid, timestamptz,"
            " integer, text, jsonb, text, text, integer) TO slotguard_app"
        )


def _median_run(runs: list[ConcurrentRun]) -> ConcurrentRun:
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


def concurrent(db: BenchDb) -> None:
    """Each scenario runs ROUNDS times, its paths interleaved (baseline, now, 0003's function), so a
    burst of load on the shared machine hits them alike; the median round of each is reported."""
    p = PROCESSES
    with psycopg.connect(db.admin_url, autocommit=True) as admin:
        admin.execute(PLAIN_TABLE)

    def rows(n: int, distinct_calendars: bool, minutes: int = 10) -> list[tuple[Any, ...]]:
        org = uuid.uuid4()
        return [
            (
                org,
                uuid.uuid4(),
                uuid.uuid4() if distinct_calendars else None,
                slot(i),
                slot(i) + timedelta(minutes=minutes),
                minutes,
            )
            for i in range(n)
        ]

    def booking_jobs(n: int, distinct_calendars: bool) -> list[tuple[Any, ...]]:
        return [(o, c, r, s, m) for o, c, r, s, _, m in rows(n, distinct_calendars)]

    def hot_jobs() -> list[tuple[Any, ...]]:
        org = uuid.uuid4()
        return [(org, uuid.uuid4(), None, BASE, 60)] * 1000

    def rounds(paths: dict[str, tuple[str, str, Any, bool]]) -> dict[str, ConcurrentRun]:
        """paths: name -> (url, statement, a job-list factory, whether it answers a status)."""
        runs: dict[str, list[ConcurrentRun]] = {name: [] for name in paths}
        for _ in range(ROUNDS):
            for name, (url, statement, jobs, booking) in paths.items():
                runs[name].append(run_processes(url, statement, jobs(), p, _status if booking else None))
        return {name: _median_run(r) for name, r in runs.items()}

    # 1. distinct calendars: nothing contends but the database itself.
    progress(f"concurrent: {N} bookings on distinct calendars, {p} processes, {ROUNDS} rounds")
    r = rounds(
        {
            "plain": (db.admin_url, PLAIN_INSERT, lambda: rows(N, True), False),
            "excl": (db.admin_url, EXCLUSION_ONLY_INSERT, lambda: rows(N, True), False),
            "now": (db.app_url, BOOK, lambda: booking_jobs(N, True), True),
            "0003": (db.app_url, BOOK_0003, lambda: booking_jobs(N, True), True),
        }
    )
    assert r["now"].outcomes == r["0003"].outcomes == {"created": N}, (r["now"].outcomes, r["0003"].outcomes)
    TABLE.add(
        f"`book_appointment_with_lock()` vs plain INSERT, {p} processes, {N} distinct calendars",
        f"{r['now'].rate:.0f}/s (0003's function: {r['0003'].rate:.0f}/s,"
        f" {r['0003'].rate / r['plain'].rate:.2f}x)",
        f"plain INSERT {r['plain'].rate:.0f}/s (exclusion-only INSERT into the real table:"
        f" {r['excl'].rate:.0f}/s, {r['excl'].rate / r['plain'].rate:.2f}x)",
        _ratio(r["now"].rate, r["plain"].rate),
        ">= 0.7x",
    )

    # 2. one calendar, distinct 10-minute slots in time order: six per hour stripe contend.
    progress(f"concurrent: {SLOTS} slots of one calendar in time order, {p} processes, {ROUNDS} rounds")
    r = rounds(
        {
            "excl": (db.admin_url, EXCLUSION_ONLY_INSERT, lambda: rows(SLOTS, False), False),
            "now": (db.app_url, BOOK, lambda: booking_jobs(SLOTS, False), True),
            "0003": (db.app_url, BOOK_0003, lambda: booking_jobs(SLOTS, False), True),
        }
    )
    assert r["now"].outcomes == r["0003"].outcomes == {"created": SLOTS}, (
        r["now"].outcomes,
        r["0003"].outcomes,
    )
    TABLE.add(
        f"same, one calendar, {SLOTS} distinct 10-minute slots in time order, vs exclusion-only INSERT",
        f"{r['now'].rate:.0f}/s (0003's function: {r['0003'].rate:.0f}/s,"
        f" {r['0003'].rate / r['excl'].rate:.2f}x)",
        f"exclusion-only INSERT {r['excl'].rate:.0f}/s",
        _ratio(r["now"].rate, r["excl"].rate),
        ">= 0.7x",
    )

    # 3. the hot slot: 1000 attempts at one hour of one calendar.
    progress(f"concurrent: 1000 attempts at one slot, {p} processes, {ROUNDS} rounds")
    r = rounds(
        {
            "plain": (db.admin_url, PLAIN_INSERT, lambda: rows(1000, True, 60), False),
            "now": (db.app_url, BOOK, hot_jobs, True),
            "0003": (db.app_url, BOOK_0003, hot_jobs, True),
        }
    )
    for name in ("now", "0003"):
        assert r[name].outcomes == {"created": 1, "conflict": 999}, (name, r[name].outcomes)
    TABLE.add(
        f"hot slot, 1000 attempts at one slot, {p} processes",
        f"1 created, 999 conflict, 0 deadlocks, 0 busy (every round); {r['now'].rate:.0f} answers/s"
        f" (0003's function: {r['0003'].rate:.0f}/s, {r['0003'].rate / r['plain'].rate:.2f}x)",
        f"plain INSERT {r['plain'].rate:.0f}/s",
        _ratio(r["now"].rate, r["plain"].rate),
        "1 winner, 999 x 409, 0 deadlocks, 0 busy, >= 0.5x",
    )


def main() -> None:
    with bench_database() as db:
        install_reference(db)
        sequential(db)
        concurrent(db)


if __name__ == "__main__":
    main()
