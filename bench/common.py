"""Shared benchmark setup: a migrated database (embedded, or DATABASE_URL), timing helpers, a
multiprocessing harness (one process per client, as Lambda runs one per container) and the
one table `make bench` prints."""

from __future__ import annotations

import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from slotguard.db.migrate import ensure_app_login, migrate

APP_PASSWORD = "bench-" + uuid.uuid4().hex
# An external server, if the caller gave one; benchmarks later point DATABASE_URL at their own app role.
EXTERNAL_DATABASE_URL = os.environ.get("DATABASE_URL")


def progress(message: str) -> None:
    """Progress goes to stderr; stdout carries the table alone."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class BenchDb:
    admin_url: str
    app_url: str
    server_version: str = ""


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
        row = conn.execute("SELECT current_setting('server_version'), current_setting('fsync')").fetchone()
        version = f"PostgreSQL {row[0]} (fsync={row[1]})" if row else ""
    admin = psycopg.conninfo.make_conninfo(root, dbname=name)
    migrate(admin)
    ensure_app_login(admin, password=APP_PASSWORD)
    app = psycopg.conninfo.make_conninfo(admin, user="slotguard_app", password=APP_PASSWORD)
    TABLE.database = version
    try:
        yield BenchDb(admin, app, version)
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


# -- concurrency: one process per client ------------------------------------------------------


@dataclass
class ConcurrentRun:
    outcomes: Counter[str]
    wall_s: float

    @property
    def rate(self) -> float:
        return sum(self.outcomes.values()) / self.wall_s


def _worker(
    url: str,
    statement: str,
    jobs: Sequence[tuple[Any, ...]],
    classify: Callable[[Any], str] | None,
    barrier: Any,
    out: Any,
) -> None:
    outcomes: Counter[str] = Counter()
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("SELECT 1")
        barrier.wait()
        started = time.monotonic()
        for params in jobs:
            try:
                cur = conn.execute(statement, params)
                outcomes[classify(cur.fetchone()) if classify else "ok"] += 1
            except psycopg.errors.DeadlockDetected:
                outcomes["deadlock"] += 1
            except psycopg.Error as exc:
                outcomes[type(exc).__name__] += 1
        out.put((outcomes, started, time.monotonic()))


def run_processes(
    url: str,
    statement: str,
    jobs: Sequence[tuple[Any, ...]],
    processes: int,
    classify: Callable[[Any], str] | None = None,
) -> ConcurrentRun:
    """Run `statement` once per job over `processes` processes with one connection each; job i
    goes to process i mod `processes`, so a list in time order is taken roughly in time order.
    Timed from the moment every process is connected to the moment the last one finishes."""
    ctx = multiprocessing.get_context("fork")  # the workers need nothing but psycopg
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(url, statement, jobs[w::processes], classify, barrier, out))
        for w in range(processes)
    ]
    for p in workers:
        p.start()
    results = [out.get(timeout=600) for _ in workers]
    for p in workers:
        p.join()
    total: Counter[str] = Counter()
    for outcomes, _, _ in results:
        total.update(outcomes)
    return ConcurrentRun(total, max(r[2] for r in results) - min(r[1] for r in results))


# -- the one table ----------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    figure: str
    baseline: str
    ratio: str
    target: str


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    database: str = ""

    def add(self, what: str, figure: str, baseline: str, ratio: str, target: str = "") -> None:
        self.rows.append(Row(what, figure, baseline, ratio, target))
        progress(f"{what}: {figure} | {baseline} | {ratio}")

    def render(self) -> str:
        la = os.getloadavg()
        lines = [
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{self.database}; load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} (1/5/15 min)",
            "",
            "| what | figure | same-run baseline | ratio | target |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {r.what} | {r.figure} | {r.baseline} | {r.ratio} | {r.target} |" for r in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)


TABLE = Table()
