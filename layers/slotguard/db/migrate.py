"""Applies the numbered SQL files in `slotguard/migrations` once each, in order.

Kept small on purpose (see docs/decisions.md): plain SQL files, a table of applied
versions with checksums, one transaction per file, and a session advisory lock so that
two runners starting at once (two deploys, a deploy and a local stack) apply each file
exactly once. The runner connects directly as the administrator, never through the
application's RDS Proxy path, so its session lock pins nothing.
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


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


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


def migrations_digest(migrations: list[Migration] | None = None) -> str:
    """One digest of the migration files (their versions, names and text): the deploy-time custom
    resource carries it as a property, and its handler compares it with the files it holds."""
    digest = hashlib.sha256()
    for m in load_migrations() if migrations is None else migrations:
        digest.update(f"{m.version:04d}_{m.name}\0{m.checksum}\n".encode())
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
    admin_url: str, migrations: list[Migration] | None = None, *, connect_timeout_s: int = CONNECT_TIMEOUT_S
) -> list[int]:
    """Apply what is missing; return the versions this call applied."""
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[int] = []
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
            done = {
                row[0]: row[1]
                for row in conn.execute("SELECT version, checksum FROM public.slotguard_schema_migrations")
            }
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} changed after it was applied"
                        )
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL(cast(LiteralString, migration.text)))
                    conn.execute("RESET ROLE")  # files may SET LOCAL ROLE slotguard_owner
                    conn.execute(
                        "INSERT INTO public.slotguard_schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


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
