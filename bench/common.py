"""Shared benchmark setup: a migrated database (embedded, or DATABASE_URL) and reporting."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from slotguard.db.migrate import ensure_app_login, migrate

APP_PASSWORD = "bench-" + uuid.uuid4().hex
# An external server, if the caller gave one; benchmarks later point DATABASE_URL at their own app role.
EXTERNAL_DATABASE_URL = os.environ.get("DATABASE_URL")


@dataclass
class BenchDb:
    admin_url: str
    app_url: str


@contextmanager
def bench_database() -> Iterator[BenchDb]:
    server = None
    tmp = None
    if EXTERNAL_DATABASE_URL:
        root = EXTERNAL_DATABASE_URL
    else:
        from slotguard_local.postgres import EmbeddedPostgres

        tmp = tempfile.TemporaryDirectory(prefix="slotguard-bench-")
        server = EmbeddedPostgres(Path(tmp.name) / "data", durable=False).start()
        root = server.admin_url
    name = f"slotguard_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(root, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin = psycopg.conninfo.make_conninfo(root, dbname=name)
    migrate(admin)
    ensure_app_login(admin, password=APP_PASSWORD)
    app = psycopg.conninfo.make_conninfo(admin, user="slotguard_app", password=APP_PASSWORD)
    try:
        yield BenchDb(admin, app)
    finally:
        if server is not None:
            server.stop(mode="immediate")
            assert tmp is not None
            tmp.cleanup()
        else:
            with psycopg.connect(root, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class Timing:
    label: str
    samples_ms: list[float]
    wall_s: float

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    @property
    def throughput(self) -> float:
        return len(self.samples_ms) / self.wall_s


def time_each(label: str, n: int, op: Callable[[int], object]) -> Timing:
    samples = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        op(i)
        samples.append((time.perf_counter() - t0) * 1000)
    return Timing(label, samples, time.perf_counter() - start)


def report(title: str, rows: list[Timing], baseline: Timing) -> None:
    print(f"\n{title}")
    print(f"  {'path':<44} {'median ms':>10} {'p99 ms':>8} {'ops/s':>9} {'x baseline (median)':>20}")
    for row in rows:
        ratio = row.median / baseline.median
        print(f"  {row.label:<44} {row.median:>10.3f} {row.p99:>8.3f} {row.throughput:>9.0f} {ratio:>19.2f}x")
