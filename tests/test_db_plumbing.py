"""The database layer's plumbing, each piece caused for real: the migration runner forgetting a
function file no longer shipped, refusing a package whose files disagree, digesting what it is
given; the login roles' passwords set on every run; a closed connection ending its server session;
every admin connection giving up on a server that never answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from slotguard.config import DatabaseSettings
from slotguard.db import migrate as migrate_module
from slotguard.db.connection import Database
from slotguard.db.migrate import (
    FUNCTION_FILES,
    MigrationError,
    applied_version,
    ensure_app_login,
    load_function_files,
    load_migrations,
    migrate,
    migrations_digest,
    run_migrations,
)
from tests.conftest import APP_PASSWORD, PgInstance


def recorded_functions(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT name, checksum FROM public.slotguard_schema_functions").fetchall())


def test_a_function_file_no_longer_shipped_is_forgotten_and_the_rest_kept(fresh_db: str) -> None:
    # Given a migrated database that recorded a function file this release no longer ships
    migrate(fresh_db)
    shipped = recorded_functions(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        conn.execute(
            "INSERT INTO public.slotguard_schema_functions (name, checksum) VALUES ('retired.sql', 'x')"
        )
    # When the runner runs again
    run = run_migrations(fresh_db)
    # Then the retired file's record is gone, nothing was applied, and the shipped ones are as they were
    assert (run.versions, run.functions) == ([], [])
    assert recorded_functions(fresh_db) == shipped
    assert applied_version(fresh_db) == load_migrations()[-1].version


def test_an_empty_database_has_no_applied_version(fresh_db: str) -> None:
    assert applied_version(fresh_db) is None


def test_a_database_whose_migrations_table_records_nothing_has_no_applied_version(fresh_db: str) -> None:
    # Given a database where a runner with nothing to apply made the table of applied versions
    assert migrate(fresh_db, migrations=[], functions=[]) == []
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM public.slotguard_schema_migrations").fetchone() == (0,)
    # When its applied version is read, Then there is none (max() of no row is NULL, not a version)
    assert applied_version(fresh_db) is None


def test_two_migrations_with_one_version_are_refused_naming_the_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a package whose migrations folder holds two files numbered 0001 (and one that is no migration)
    (tmp_path / "0001_first.sql").write_text("SELECT 1;", encoding="utf-8")
    (tmp_path / "0001_again.sql").write_text("SELECT 2;", encoding="utf-8")
    (tmp_path / "0002_next.sql").write_text("SELECT 'é';", encoding="utf-8")
    (tmp_path / "README.md").write_text("not a migration", encoding="utf-8")
    monkeypatch.setattr(migrate_module, "resources", SimpleNamespace(files=lambda _package: tmp_path))
    # When they are loaded, Then the runner refuses, naming the versions in order
    with pytest.raises(MigrationError) as refused:
        load_migrations()
    assert str(refused.value) == "duplicate migration versions: [1, 1, 2]"


@pytest.mark.parametrize("change", ["unlisted", "missing"])
def test_function_files_and_their_list_must_agree_either_way(
    monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    # Given a package whose function-file list drops a shipped file, or names one not shipped
    listed = FUNCTION_FILES[:-1] if change == "unlisted" else (*FUNCTION_FILES, "nowhere.sql")
    monkeypatch.setattr(migrate_module, "FUNCTION_FILES", listed)
    # When the files are loaded, Then the runner refuses, naming the file on the side it is on
    with pytest.raises(MigrationError) as refused:
        load_function_files()
    expected = (
        f"not listed [{FUNCTION_FILES[-1]!r}], missing []"
        if change == "unlisted"
        else "not listed [], missing ['nowhere.sql']"
    )
    assert str(refused.value) == f"sql/functions and FUNCTION_FILES disagree: {expected}"


def test_the_digest_is_of_the_files_it_is_given() -> None:
    # Given the shipped files, and the same without the newest migration
    migrations, functions = load_migrations(), load_function_files()
    # Then the digest is the shipped one for the same files and another for fewer
    assert migrations_digest(migrations, functions) == migrations_digest()
    assert migrations_digest(migrations[:-1], functions) != migrations_digest()
    assert migrations_digest(migrations, functions[:-1]) != migrations_digest()


def test_the_login_roles_password_is_set_on_every_run_and_no_iam_grant_without_asking(
    pg: PgInstance,
) -> None:
    # Given the login roles' stored password verifiers
    def verifiers() -> dict[str, str]:
        with psycopg.connect(pg.admin_url) as conn:
            return dict(
                conn.execute(
                    "SELECT rolname, rolpassword FROM pg_authid"
                    " WHERE rolname IN ('slotguard_app', 'slotguard_retention')"
                ).fetchall()
            )

    before = verifiers()
    # When the logins are ensured again with the same password, IAM not asked for (an rds_iam
    # role exists here, as RDS has it: a grant would succeed, and must not happen)
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE rds_iam; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute("REVOKE rds_iam FROM slotguard_app, slotguard_retention")
    ensure_app_login(pg.admin_url, password=APP_PASSWORD)
    # Then each role's verifier was written anew (a fresh salt) and that password logs in as each
    after = verifiers()
    assert set(after) == {"slotguard_app", "slotguard_retention"}
    assert all(after[role] != before[role] and after[role].startswith("SCRAM-SHA-256$") for role in after)
    for role in after:
        with psycopg.connect(psycopg.conninfo.make_conninfo(pg.app_url, user=role)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
    # And neither role was made a member of rds_iam
    with psycopg.connect(pg.admin_url) as conn:
        assert not conn.execute(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            " WHERE r.rolname = 'rds_iam'"
            " AND m.member IN ('slotguard_app'::regrole, 'slotguard_retention'::regrole)"
        ).fetchall()


def test_closing_the_database_ends_its_server_session(pg: PgInstance) -> None:
    # Given a Database with an open connection
    db = Database(DatabaseSettings(database_url=pg.app_url))
    pid = db.scalar("SELECT pg_backend_pid()", ())
    # When it is closed, Then its server session ends
    db.close()
    with psycopg.connect(pg.admin_url) as conn:
        for _ in range(50):
            if not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the session {pid} is still open after close()")


@pytest.mark.parametrize(
    "call",
    [
        lambda url: migrate(url, connect_timeout_s=2),
        lambda url: applied_version(url, connect_timeout_s=2),
        lambda url: ensure_app_login(url, password="x", connect_timeout_s=2),
    ],
    ids=["migrate", "applied_version", "ensure_app_login"],
)
def test_every_admin_connection_gives_up_on_a_server_that_never_answers(call: Callable[[str], Any]) -> None:
    # Given a TCP endpoint that accepts connections but never says a word (a black-holed route, a
    # hung instance)
    silent = socket.create_server(("127.0.0.1", 0))
    url = f"postgresql://nobody@127.0.0.1:{silent.getsockname()[1]}/slotguard?sslmode=disable"
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call(url)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    # When the admin connection is made
    started = time.monotonic()
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=20)
    silent.close()
    # Then it fails within its connect timeout instead of hanging the deploy
    assert outcome, "still waiting after 20 s"
    assert isinstance(outcome[0], psycopg.OperationalError)
    assert time.monotonic() - started < 10


def test_the_retention_cleanup_logs_in_as_its_own_role_when_the_url_names_the_applications(
    pg: PgInstance,
) -> None:
    from slotguard.config import RetentionDatabaseSettings

    # Given the local setting: one DATABASE_URL, naming the application's role
    settings = RetentionDatabaseSettings(database_url=pg.app_url)
    # When the retention cleanup's connection asks who it is
    # Then it is the retention role (its own grants), not the application's
    assert Database(settings).scalar("SELECT current_user", ()) == "slotguard_retention"
    # And the application's settings from the same URL stay the application's role
    assert (
        Database(DatabaseSettings(database_url=pg.app_url)).scalar("SELECT current_user", ())
        == "slotguard_app"
    )
