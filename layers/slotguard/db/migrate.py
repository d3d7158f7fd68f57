"""Applies the database's SQL: the numbered migrations once each, then the function files.

Two kinds of files (see docs/decisions.md):

- `slotguard/migrations/NNNN_name.sql`, versioned: applied once each, in version order, and never
  edited after (a changed checksum is refused). Schema changes and data moves only; from 0013 on
  they define no functions (0001-0012 did, and stay as deployed databases ran them).
- `slotguard/sql/functions/*.sql`, repeatable (Flyway's `R__` files): each holds the *current*
  definition of one SQL function or of a closely related group (`CREATE OR REPLACE`, with its
  grants). A file is applied again whenever its checksum differs from the one recorded for it,
  and every file is applied again whenever a versioned migration was, so a migration that drops
  or replaces a function never leaves the database with another definition than the files'.
  They are applied in the order of FUNCTION_FILES below, after the versioned migrations.

Everything one run applies is one transaction: a deploy's new migrations and function files
commit together or not at all. A table of applied versions and one of applied function files
hold the checksums; a session advisory lock makes two runners starting at once (two deploys, a
deploy and a local stack) apply each change exactly once. The runner connects directly as the
administrator, never through the application's RDS Proxy path, so its session lock pins nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import LiteralString, cast

import psycopg
from psycopg import sql

MIGRATION_LOCK_KEY = 0x510760A2D  # any constant; shared by every runner of this schema
# A deploy must fail, not hang until the custom resource's hour-long timeout, when the instance
# does not answer (wrong security group, black-holed route, instance stuck in a reboot).
CONNECT_TIMEOUT_S = 10
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# The function files, in the order they are applied (a file may only use what an earlier file or
# the schema defines: SQL-language bodies are checked when created). Helpers first, then the
# booking API, then the webhook API, then the maintenance functions. A file in the folder that is
# not listed here, or a listed one that is missing, is refused.
FUNCTION_FILES = (
    "tenancy.sql",
    "calendar_locks.sql",
    "calendar_hours.sql",
    "calendar_rules.sql",
    "appointment_json.sql",
    "conflicts.sql",
    "org_policy.sql",
    "booking.sql",
    "cancel.sql",
    "reschedule.sql",
    "appointment_reads.sql",
    "availability.sql",
    "webhook_claim.sql",
    "webhook_outcome.sql",
    "webhook_batch_claim.sql",
    "webhook_dead_letter.sql",
    "webhook_metrics.sql",
    "webhook_redrive.sql",
    "retention.sql",
)


class _Checksummed:
    """A SQL file's checksum: what the runner records, and compares on the next run."""

    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class Migration(_Checksummed):
    version: int
    name: str
    text: str


@dataclass(frozen=True)
class FunctionFile(_Checksummed):
    name: str
    text: str


@dataclass(frozen=True)
class MigrationRun:
    """What one run applied: versioned migrations, and function files (in the order applied)."""

    versions: list[int]
    functions: list[str]


class MigrationError(RuntimeError):
    pass


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("slotguard.migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def load_function_files() -> list[FunctionFile]:
    folder = resources.files("slotguard").joinpath("sql", "functions")
    present = {entry.name for entry in folder.iterdir() if entry.name.endswith(".sql")}
    unlisted, missing = present - set(FUNCTION_FILES), set(FUNCTION_FILES) - present
    if unlisted or missing:
        raise MigrationError(
            f"sql/functions and FUNCTION_FILES disagree: not listed {sorted(unlisted)},"
            f" missing {sorted(missing)}"
        )
    return [FunctionFile(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in FUNCTION_FILES]


def migrations_digest(
    migrations: list[Migration] | None = None, functions: list[FunctionFile] | None = None
) -> str:
    """One digest of the SQL files (the migrations' versions, names and text, and the function
    files' names and text, in order): the deploy-time custom resource carries it as a property,
    and its handler compares it with the files it holds."""
    digest = hashlib.sha256()
    for m in load_migrations() if migrations is None else migrations:
        digest.update(f"{m.version:04d}_{m.name}\0{m.checksum}\n".encode())
    for f in load_function_files() if functions is None else functions:
        digest.update(f"functions/{f.name}\0{f.checksum}\n".encode())
    return digest.hexdigest()


def applied_version(admin_url: str, *, connect_timeout_s: int = CONNECT_TIMEOUT_S) -> int | None:
    """The newest migration applied to this database, or None when it holds no schema of ours."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=connect_timeout_s) as conn:
        exists = conn.execute(
            "SELECT to_regclass('public.slotguard_schema_migrations') IS NOT NULL"
        ).fetchone()
        if not (exists and exists[0]):
            return None
        row = conn.execute("SELECT max(version) FROM public.slotguard_schema_migrations").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def migrate(
    admin_url: str,
    migrations: list[Migration] | None = None,
    functions: list[FunctionFile] | None = None,
    *,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
) -> list[int]:
    """Apply what is missing; return the versions this call applied."""
    return run_migrations(admin_url, migrations, functions, connect_timeout_s=connect_timeout_s).versions


def run_migrations(
    admin_url: str,
    migrations: list[Migration] | None = None,
    functions: list[FunctionFile] | None = None,
    *,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
) -> MigrationRun:
    """Apply the missing migrations, then the function files that changed (all of them when a
    migration was applied), in one transaction; return what this call applied."""
    migrations = load_migrations() if migrations is None else migrations
    functions = load_function_files() if functions is None else functions
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=connect_timeout_s) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS public.slotguard_schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            conn.execute(
                """CREATE TABLE IF NOT EXISTS public.slotguard_schema_functions (
                       name text PRIMARY KEY,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                row[0]: row[1]
                for row in conn.execute("SELECT version, checksum FROM public.slotguard_schema_migrations")
            }
            for migration in migrations:
                if migration.version in done and done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it was applied"
                    )
            pending = [m for m in migrations if m.version not in done]
            recorded = {
                row[0]: row[1]
                for row in conn.execute("SELECT name, checksum FROM public.slotguard_schema_functions")
            }
            stale = [f for f in functions if pending or recorded.get(f.name) != f.checksum]
            gone = sorted(set(recorded) - {f.name for f in functions})
            if not (pending or stale or gone):
                return MigrationRun([], [])
            with conn.transaction():
                for migration in pending:
                    conn.execute(sql.SQL(cast(LiteralString, migration.text)))
                    conn.execute("RESET ROLE")  # files may SET LOCAL ROLE slotguard_owner
                    conn.execute(
                        "INSERT INTO public.slotguard_schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                for function_file in stale:
                    conn.execute(sql.SQL(cast(LiteralString, function_file.text)))
                    conn.execute("RESET ROLE")
                    conn.execute(
                        "INSERT INTO public.slotguard_schema_functions (name, checksum) VALUES (%s, %s)"
                        " ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
                        (function_file.name, function_file.checksum),
                    )
                if gone:  # a file removed (its functions dropped by a migration): forget its checksum
                    conn.execute(
                        "DELETE FROM public.slotguard_schema_functions WHERE name = ANY(%s)", (gone,)
                    )
            return MigrationRun([m.version for m in pending], [f.name for f in stale])
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


LOGIN_ROLES = ("slotguard_app", "slotguard_retention")


def ensure_app_login(
    admin_url: str,
    *,
    password: str | None = None,
    iam: bool = False,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
) -> None:
    """Give the login roles (the application, and the retention cleanup) their way in: a
    password (local, tests; the same one for both) or rds_iam (AWS)."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=connect_timeout_s) as conn:
        for role in LOGIN_ROLES:
            if password is not None:
                conn.execute(
                    sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(password)
                    )
                )
            if iam:
                conn.execute(sql.SQL("GRANT rds_iam TO {}").format(sql.Identifier(role)))
