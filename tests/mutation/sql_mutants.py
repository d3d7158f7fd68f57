"""Mutation testing of the SQL contract (`make mutation-sql`): each mutant below is one deliberate
fault in the SQL the database runs (a lock dropped, an overlap test weakened, a status swapped, a
policy removed, ...). For each, a scratch copy of the repository gets that one change, and the
database tests run against it; the mutant is killed when at least one test fails. A mutant that
survives is a guarantee no test holds.

    .venv/bin/python -m tests.mutation.sql_mutants [--only NAME] [--keep]

Prints one line per mutant and a summary; exits 1 when a mutant survived or did not apply (its
text is no longer in the SQL: the list must follow the code).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL_DIRS = ("layers/slotguard/migrations", "layers/slotguard/sql")
# The tests that speak to the database as the application role (the booking and webhook SQL API,
# tenancy, retention, migrations): what must notice a fault in the SQL.
DB_TESTS = (
    "tests/test_sql_invariants.py",
    "tests/test_booking_api.py",
    "tests/test_booking_concurrency.py",
    "tests/test_booking_validation_and_tenancy.py",
    "tests/test_booking_window_property.py",
    "tests/test_webhook_claims.py",
    "tests/test_webhook_processor.py",
    "tests/test_metrics_api.py",
    "tests/test_cleanup.py",
    "tests/test_hostile_input.py",
    "tests/test_webhook_redrive.py",
    "tests/test_booking_rules.py",
    "tests/test_calendar_rules.py",
    "tests/test_booking_past.py",
    "tests/test_booking_lock_timeouts.py",
)
ALL_SQL = "layers/slotguard/**/*.sql"  # the versioned migrations and the function files alike


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    file: str  # a path below the repository, or a glob
    pattern: str  # a regular expression (re.S | re.M); every match in the file is replaced
    replacement: str


MUTANTS: list[Mutant] = [
    Mutant(
        "no-calendar-lock",
        "bookings and reschedules take no per-hour advisory lock of the calendar (the constraint is left)",
        ALL_SQL,
        r"PERFORM pg_advisory_xact_lock\((k|v_keys\[v_j\])\);",
        "NULL;",
    ),
    Mutant(
        "no-settings-lock",
        "a booking reads the calendar's rules without the org's settings lock (a rule change can pass it)",
        "layers/slotguard/sql/functions/booking.sql",
        r"IF NOT pg_try_advisory_xact_lock_shared\(v_settings_key\) THEN",
        "IF false THEN",
    ),
    Mutant(
        "overlap-equals",
        "the conflict probe's overlap test && becomes = (only identical ranges conflict)",
        "layers/slotguard/sql/functions/conflicts.sql",
        r"&& tstzrange\(p_start, p_end, '\[\)'\)",
        "= tstzrange(p_start, p_end, '[)')",
    ),
    Mutant(
        "cancelled-still-blocks",
        "the conflict probe counts cancelled appointments too",
        "layers/slotguard/sql/functions/conflicts.sql",
        r"AND a\.status = 'scheduled'",
        "AND a.status IN ('scheduled', 'cancelled')",
    ),
    Mutant(
        "no-exclusion-constraint",
        "the exclusion constraint is gone (only the lock prevents overlaps)",
        "layers/slotguard/migrations/0021_*.sql",
        r"ALTER TABLE slotguard\.appointments ADD CONSTRAINT appointments_no_overlap EXCLUDE USING gist \(.*?"
        r"WHERE \(status = 'scheduled'\);",
        "",
    ),
    Mutant(
        "constraint-ignores-buffers",
        "the exclusion constraint compares the appointments' own times, not their buffered ones",
        "layers/slotguard/migrations/0021_*.sql",
        r"tstzrange\(coalesce\(blocked_from, scheduled_at\), "
        r"coalesce\(blocked_until, ends_at\), '\[\)'\) WITH &&",
        "tstzrange(scheduled_at, ends_at, '[)') WITH &&",
    ),
    Mutant(
        "past-bookable",
        "a booking may start in the past without the backfill flag",
        "layers/slotguard/sql/functions/booking.sql",
        r"IF p_scheduled_at < now\(\) AND NOT coalesce\(p_backfill, false\) THEN",
        "IF false THEN",
    ),
    Mutant(
        "rules-never-broken",
        "no rule of a calendar is ever found broken (_rule_violation always answers none)",
        "layers/slotguard/sql/functions/calendar_hours.sql",
        r"(CREATE OR REPLACE FUNCTION slotguard\._rule_violation\(.*?\n(?:DECLARE.*?)?BEGIN\n)",
        r"\1    RETURN NULL;\n",
    ),
    Mutant(
        "idempotency-body-unchecked",
        "an Idempotency-Key reused with another body replays the first booking",
        "layers/slotguard/sql/functions/booking.sql",
        r"IF v_key\.request_hash IS DISTINCT FROM p_request_hash THEN",
        "IF false THEN",
    ),
    Mutant(
        "idempotency-never-expires",
        "an expired Idempotency-Key is still replayed",
        "layers/slotguard/sql/functions/booking.sql",
        r" AND expires_at > now\(\);",
        ";",
    ),
    Mutant(
        "cancel-keeps-scheduled",
        "a cancellation leaves the appointment scheduled",
        "layers/slotguard/sql/functions/cancel.sql",
        r"SET status = 'cancelled', cancelled_at = now\(\)",
        "SET status = 'scheduled', cancelled_at = NULL",
    ),
    Mutant(
        "no-skip-locked",
        "retention deletes wait for rows another transaction holds (FOR UPDATE SKIP LOCKED dropped)",
        "layers/slotguard/sql/functions/retention.sql",
        r" FOR UPDATE SKIP LOCKED",
        "",
    ),
    Mutant(
        "redrive-waits-for-locked-rows",
        "the redrive's mark waits for rows the processor holds (SKIP LOCKED dropped)",
        "layers/slotguard/sql/functions/webhook_redrive.sql",
        r" FOR UPDATE SKIP LOCKED",
        " FOR UPDATE",
    ),
    Mutant(
        "outcome-spends-no-attempt",
        "a recorded outcome does not count its attempt",
        "layers/slotguard/sql/functions/webhook_outcome.sql",
        r"attempts = attempts \+ 1",
        "attempts = attempts",
    ),
    Mutant(
        "late-finisher-completes",
        "a finisher whose claim was taken over can still record its outcome (claim token unchecked in"
        " complete and fail)",
        "layers/slotguard/sql/functions/webhook_outcome.sql",
        r" AND claim_token = p_token\n(\s+RETURNING id, attempts)",
        "\n\\1",
    ),
    Mutant(
        "late-releaser-releases",
        "a worker whose claim was taken over can still give it back, resetting the current worker's"
        " claim (claim token unchecked in release)",
        "layers/slotguard/sql/functions/webhook_outcome.sql",
        r" AND claim_token = p_token;",
        ";",
    ),
    Mutant(
        "finished-rows-reprocessed",
        "a completed or dead-lettered delivery is claimed again instead of skipped",
        "layers/slotguard/sql/functions/webhook_claim.sql",
        r"IF v_row\.status IN \('completed', 'dead_letter'\) THEN",
        "IF v_row.status IN ('dead_letter') THEN",
    ),
    Mutant(
        "no-rls-on-appointments",
        "row-level security is not forced on appointments",
        "layers/slotguard/migrations/0002_booking_schema.sql",
        r"ALTER TABLE slotguard\.appointments FORCE ROW LEVEL SECURITY;",
        "",
    ),
    Mutant(
        "tenant-policy-open",
        "the appointments' tenant policy lets every org's rows through",
        "layers/slotguard/migrations/0002_booking_schema.sql",
        r"(CREATE POLICY tenant_isolation ON slotguard\.appointments\s+USING \().*?(\)\s*WITH CHECK)",
        r"\1true\2",
    ),
]


def _copy_repository(target: Path, commit: str) -> None:
    """The committed tree of `commit` (never a working tree someone is editing)."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)


def _apply(mutant: Mutant, tree: Path) -> int:
    """Apply the mutant to the copy; how many places it changed."""
    changed = 0
    for path in sorted(tree.glob(mutant.file)):
        text = path.read_text()
        new, n = re.subn(mutant.pattern, mutant.replacement, text, flags=re.S | re.M)
        if n:
            path.write_text(new)
            changed += n
    return changed


def run(mutant: Mutant, keep: bool, commit: str) -> tuple[str, float, str]:
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f"sqlmut-{mutant.name}-"))
    tree = scratch / "repo"
    try:
        _copy_repository(tree, commit)
        if not _apply(mutant, tree):
            return "NOT APPLIED", time.monotonic() - started, "its text is not in the SQL any more"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tree / "layers"), str(tree / "local"), str(tree)]),
        }
        env.pop("DATABASE_URL", None)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                f"--basetemp={scratch / 'tmp'}",
                *DB_TESTS,
            ],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        failed = re.findall(r"^FAILED (\S+)", done.stdout, re.M)
        if done.returncode == 0:
            return "SURVIVED", time.monotonic() - started, ""
        if not failed:  # an error before any test could fail (the copy broken, not the mutant killed)
            return "BROKEN", time.monotonic() - started, done.stdout[-500:]
        return "killed", time.monotonic() - started, failed[0]
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep each scratch copy")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"SQL mutants of commit {commit[:12]}", flush=True)
    results = []
    for mutant in chosen:
        outcome, seconds, detail = run(mutant, args.keep, commit)
        results.append(outcome)
        print(f"{outcome:11} {mutant.name:28} {seconds:6.0f} s  {mutant.what}  [{detail}]", flush=True)
    killed = results.count("killed")
    print(f"\n{killed} of {len(results)} SQL mutants killed", flush=True)
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
