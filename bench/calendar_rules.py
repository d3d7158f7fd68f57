"""Calendar rules benchmarks (issue 20, item 6), each beside a baseline of the same run:

- booking on a calendar with rules (a time zone, weekly hours, date overrides, notice, horizon,
  durations, buffers) vs booking on a calendar without any, both the bare SQL call, sequential,
  interleaved in rounds of 100 (target: at most 1.15x);
- a month's slot search over a busy calendar with rules vs a bare range scan of the same rows
  (the appointments the search reads), printed as a ratio."""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from statistics import median

import psycopg

from bench.common import TABLE, BenchDb, bench_database, progress, time_each

N = int(os.environ.get("BENCH_N", "1000"))
SEARCHES = int(os.environ.get("BENCH_SEARCHES", "50"))
BASE = datetime(2036, 1, 1, tzinfo=UTC)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Open all day (so every benchmark slot is bookable) in two intervals, with every other rule set.
RULES = {
    "time_zone": "Europe/Berlin",
    "weekly_hours": {
        d: [{"start": "00:00", "end": "12:00"}, {"start": "12:00", "end": "24:00"}] for d in WEEKDAYS
    },
    "date_overrides": {"2036-12-24": [{"start": "00:00", "end": "24:00"}], "2036-12-25": []},
    "buffer_before_minutes": 0,
    "buffer_after_minutes": 0,
    "min_notice_minutes": 60,
    "max_horizon_days": 3650,
    "min_duration_minutes": 5,
    "max_duration_minutes": 120,
    "duration_multiple_minutes": 5,
}
# The busy calendar of the slot search: Berlin office hours, buffers, a 30-minute grid.
OFFICE = {
    "time_zone": "Europe/Berlin",
    "weekly_hours": {
        d: [{"start": "08:00", "end": "12:00"}, {"start": "13:00", "end": "18:00"}] for d in WEEKDAYS[:5]
    },
    "buffer_before_minutes": 5,
    "buffer_after_minutes": 5,
    "slot_step_minutes": 30,
}
BOOK = "SELECT slotguard.book_appointment_with_lock(%s, 'bench', %s, %s, %s, 10)"


def slot(i: int) -> datetime:
    return BASE + timedelta(minutes=10 * i)


def _offset(op: Callable[[int], None], start: int, i: int) -> None:
    op(start + i)


def booking_cost(db: BenchDb) -> None:
    org_plain, org_rules = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(db.app_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(
            "SELECT slotguard.set_calendar_rules(%s, 'bench', NULL, %s)", (org_rules, json.dumps(RULES))
        )

        def book(org: uuid.UUID, i: int) -> None:
            out = conn.execute(BOOK, (org, uuid.uuid4(), None, slot(i))).fetchone()
            assert out and out[0]["status"] == "created", out

        without, with_rules = functools.partial(book, org_plain), functools.partial(book, org_rules)
        for warm in range(20):
            without(N + warm)
            with_rules(N + warm)
        plain_s: list[float] = []
        rules_s: list[float] = []
        for start in range(0, N, 100):  # interleaved, which goes first alternating round by round
            pair = ((plain_s, without), (rules_s, with_rules))
            for samples, op in pair if start % 200 == 0 else pair[::-1]:
                t = time_each("", min(100, N - start), functools.partial(_offset, op, start))
                samples.extend(t.samples_ms)
    plain, ruled = median(plain_s), median(rules_s)
    TABLE.add(
        "sequential: bare `book_appointment_with_lock()` on a calendar with rules vs without"
        f" (median, {N} each)",
        f"{ruled:.3f} ms (Berlin hours in two intervals a day, overrides, notice, horizon, durations)",
        f"no rules {plain:.3f} ms",
        f"{ruled / plain:.2f}x",
        "<= 1.15x",
    )


def slot_search_cost(db: BenchDb) -> None:
    org, room = uuid.uuid4(), uuid.uuid4()
    start = datetime(2036, 3, 2, tzinfo=UTC)  # a Monday; the search spans 31 days
    end = start + timedelta(days=31)
    with psycopg.connect(db.app_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(
            "SELECT slotguard.set_calendar_rules(%s, 'bench', %s, %s)", (org, room, json.dumps(OFFICE))
        )
        # Busy: two of every three half-hour slots of the office hours booked (30 minutes, padded).
        booked = 0
        for day in range(31):
            for hhmm in range(16):
                if hhmm % 3 == 2:
                    continue
                at = start + timedelta(days=day, hours=7, minutes=40 * hhmm)  # 08:00 Berlin (winter, UTC+1)
                out = conn.execute(BOOK.replace(", 10)", ", 30)"), (org, uuid.uuid4(), room, at)).fetchone()
                booked += bool(out and out[0]["status"] == "created")

        found = conn.execute(
            "SELECT jsonb_array_length(slotguard.find_free_slots(%s, %s, %s, %s, 30, 30, 5000))",
            (org, room, start, end),
        ).fetchone()
    with (
        psycopg.connect(db.app_url, autocommit=True, prepare_threshold=None) as conn,
        psycopg.connect(db.admin_url, autocommit=True, prepare_threshold=None) as admin,
    ):

        def search(_: int) -> None:
            out = conn.execute(
                "SELECT slotguard.find_free_slots(%s, %s, %s, %s, 30, 30, 5000)", (org, room, start, end)
            ).fetchone()
            assert out is not None

        def scan(_: int) -> None:  # the same rows, read bare (no function, no tenant, no rules)
            admin.execute(
                "SELECT scheduled_at, ends_at FROM slotguard.appointments"
                " WHERE org_id = %s AND resource_id = %s AND status = 'scheduled'"
                " AND tstzrange(coalesce(blocked_from, scheduled_at),"
                " coalesce(blocked_until, ends_at), '[)') && tstzrange(%s, %s, '[)')",
                (org, room, start, end),
            ).fetchall()

        for warm in range(5):
            search(warm)
            scan(warm)
        search_s: list[float] = []
        scan_s: list[float] = []
        for _ in range(max(1, SEARCHES // 10)):  # at least one round of ten, however small BENCH_SEARCHES
            search_s += time_each("", 10, search).samples_ms
            scan_s += time_each("", 10, scan).samples_ms
    s, b = median(search_s), median(scan_s)
    TABLE.add(
        f"a month's slot search (31 days, 30-minute slots, Berlin office hours, buffers) over a busy calendar"
        f" ({booked} appointments) vs a bare range scan of the same rows (median, {len(search_s)} each)",
        f"{s:.3f} ms ({found[0] if found else '?'} free slots)",
        f"range scan {b:.3f} ms",
        f"{s / b:.2f}x",
        "printed",
    )


def main() -> None:
    with bench_database() as db:
        progress("calendar rules: booking cost")
        booking_cost(db)
        progress("calendar rules: a month's slot search")
        slot_search_cost(db)


if __name__ == "__main__":
    main()
