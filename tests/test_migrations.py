"""The migration runner: applies each numbered file once, in order, also with two at once; then the
function files (one current definition per function) whenever they change."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from slotguard.db.migrate import (
    FUNCTION_FILES,
    FunctionFile,
    Migration,
    MigrationError,
    load_function_files,
    load_migrations,
    migrate,
    migrations_digest,
    run_migrations,
)
from tests.conftest import scratch_database

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = ROOT / "layers" / "slotguard" / "sql" / "functions"
# The last numbered migration that defined functions: later ones hold schema changes only.
LAST_MIGRATION_WITH_FUNCTIONS = 12


def schema_fingerprint(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT 'rel', c.relname, c.relkind::text, c.relrowsecurity::text || c.relforcerowsecurity::text
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'slotguard'
               UNION ALL
               SELECT 'fn', p.proname, md5(p.prosrc), array_to_string(p.proacl, ',')
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'slotguard'
               UNION ALL
               SELECT 'con', conname, contype::text, pg_get_constraintdef(oid)
                 FROM pg_constraint WHERE connamespace = 'slotguard'::regnamespace
               ORDER BY 1, 2, 3"""
        ).fetchall()


def test_files_are_numbered_in_order() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions)
    assert versions[0] == 1


def test_applying_twice_changes_nothing(fresh_db: str) -> None:
    # Given a migrated database
    all_versions = [m.version for m in load_migrations()]
    assert migrate(fresh_db) == all_versions
    before = schema_fingerprint(fresh_db)
    # When the runner runs again
    assert migrate(fresh_db) == []
    # Then the schema is exactly the same
    assert schema_fingerprint(fresh_db) == before


def test_two_runners_at_once_apply_each_file_once(fresh_db: str) -> None:
    # Given two runners started at the same moment on an empty database
    barrier = threading.Barrier(2, timeout=60)  # a runner failing first fails the test, not hangs it
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            applied.append(migrate(fresh_db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then both succeed and between them every file was applied exactly once
    assert errors == []
    all_versions = [m.version for m in load_migrations()]
    assert sorted(applied[0] + applied[1]) == all_versions
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute("SELECT version FROM public.slotguard_schema_migrations ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == all_versions


def test_an_edited_applied_migration_is_refused(fresh_db: str) -> None:
    migrations = load_migrations()
    migrate(fresh_db, migrations)
    edited = [*migrations[:-1], Migration(migrations[-1].version, migrations[-1].name, "SELECT 1;")]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(fresh_db, edited)


def test_a_failing_migration_rolls_back_and_is_not_recorded(fresh_db: str) -> None:
    # Given a database migrated to the current files
    migrations = load_migrations()
    migrate(fresh_db, migrations)
    # When a new migration fails halfway
    broken = Migration(9999, "broken", "CREATE TABLE public.half_done (id int); SELECT 1/0;")
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(fresh_db, [*migrations, broken])
    # Then nothing of it stays and it is not recorded
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT to_regclass('public.half_done')").fetchone() == (None,)
        assert conn.execute("SELECT max(version) FROM public.slotguard_schema_migrations").fetchone() == (
            migrations[-1].version,
        )


def test_migrate_has_a_connect_timeout_by_default() -> None:
    import inspect

    assert inspect.signature(migrate).parameters["connect_timeout_s"].default <= 30


@pytest.fixture
def deploy_migrations(fresh_db: str, aws: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The deploy-time custom resource's function, reading the master secret of `fresh_db` (an
    empty database standing for the instance) from Secrets Manager (moto)."""
    import json

    import boto3

    from slotguard_local.functions import load_function

    info = psycopg.conninfo.conninfo_to_dict(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:  # RDS's role for IAM logins
        conn.execute("DO $$ BEGIN CREATE ROLE rds_iam; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    secret = boto3.client("secretsmanager").create_secret(
        Name=f"slotguard/test/master-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps(
            {
                "host": info.get("host", "127.0.0.1"),
                "port": int(info.get("port", 5432)),
                "username": info["user"],
                "password": info.get("password", ""),
                "dbname": info["dbname"],
            }
        ),
    )
    monkeypatch.setenv("DB_ADMIN_SECRET_ARN", secret["ARN"])
    monkeypatch.setenv("DB_SSLMODE", "prefer")
    return load_function("migrations")


def _event(kind: str, digest: str, instance: str, old_instance: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": kind,
        "ResourceProperties": {"Migrations": digest, "DatabaseResourceId": instance, "RunnerCode": "r"},
    }
    if kind != "Create":
        event["PhysicalResourceId"] = "slotguard-schema"
        old = {"Migrations": digest, "DatabaseResourceId": old_instance or instance}
        event["OldResourceProperties"] = old
    return event


def test_the_deploy_migrations_build_the_schema_then_do_nothing_again(
    deploy_migrations: Any, fresh_db: str
) -> None:
    from slotguard.db.migrate import applied_version, migrations_digest
    from slotguard_local.events import LambdaContext

    # Given an empty instance, when the stack is created
    out = deploy_migrations.lambda_handler(_event("Create", migrations_digest(), "db-A"), LambdaContext())
    # Then every file is applied, and a later update with the same files applies none
    assert applied_version(fresh_db) == load_migrations()[-1].version
    assert out["Data"]["Applied"] != "none"
    again = deploy_migrations.lambda_handler(_event("Update", migrations_digest(), "db-A"), LambdaContext())
    assert again["Data"]["Applied"] == "none"


def test_a_rollbacks_older_properties_never_touch_the_database(deploy_migrations: Any, fresh_db: str) -> None:
    from slotguard.db.migrate import applied_version, migrations_digest
    from slotguard_local.events import LambdaContext

    # Given CloudFormation rolling back: it sends the previous properties (another set of files)
    # to the function that already holds the new ones, whose digest is in the old properties
    event = _event("Update", "0" * 64, "db-A")
    event["OldResourceProperties"]["Migrations"] = migrations_digest()
    # When the custom resource is updated
    out = deploy_migrations.lambda_handler(event, LambdaContext())
    # Then it succeeds without running anything (migrations only go forward), so the rollback
    # completes instead of failing on this resource
    assert out == {"PhysicalResourceId": "slotguard-schema", "Data": {"Applied": "none"}}
    assert applied_version(fresh_db) is None


def test_a_data_keeping_stage_refuses_to_move_onto_an_empty_replaced_instance(
    deploy_migrations: Any, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slotguard.db.migrate import applied_version, migrations_digest
    from slotguard_local.events import LambdaContext

    monkeypatch.setenv("DB_REPLACEMENT", "refuse")  # prod's setting
    # Given a deploy that replaced the instance (db-A -> db-B) with an empty one
    moved = _event("Update", migrations_digest(), "db-B", old_instance="db-A")
    # When the migrations run
    with pytest.raises(deploy_migrations.ReplacedDatabaseRefused, match="allow_database_replacement"):
        deploy_migrations.lambda_handler(moved, LambdaContext())
    # Then the deploy fails (and rolls back to db-A) with nothing built on the empty instance
    assert applied_version(fresh_db) is None
    # And moving back to an instance that holds the schema (that very rollback) is allowed
    migrate(fresh_db)
    back = _event("Update", migrations_digest(), "db-A", old_instance="db-B")
    assert deploy_migrations.lambda_handler(back, LambdaContext())["Data"]["Applied"] == "none"


def test_a_disposable_stage_migrates_a_replaced_instance(
    deploy_migrations: Any, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slotguard.db.migrate import applied_version, migrations_digest
    from slotguard_local.events import LambdaContext

    monkeypatch.setenv("DB_REPLACEMENT", "migrate")  # dev's setting, or allow_database_replacement
    moved = _event("Update", migrations_digest(), "db-B", old_instance="db-A")
    deploy_migrations.lambda_handler(moved, LambdaContext())
    assert applied_version(fresh_db) == load_migrations()[-1].version


def test_a_deploy_whose_files_this_function_does_not_hold_fails(
    deploy_migrations: Any, fresh_db: str
) -> None:
    from slotguard.db.migrate import applied_version
    from slotguard_local.events import LambdaContext

    # Given a deploy asking for migration files the function does not hold (its code lags), and
    # which is no rollback from this function's files
    for kind in ("Create", "Update"):
        event = _event(kind, "1" * 64, "db-A")
        # When it runs, then it fails the deploy instead of succeeding without migrating
        with pytest.raises(deploy_migrations.MigrationFilesMismatch):
            deploy_migrations.lambda_handler(event, LambdaContext())
    assert applied_version(fresh_db) is None


def test_the_deploy_login_never_hands_the_master_password_to_a_server_asking_for_it_in_clear(
    aws: str,
) -> None:
    import json
    import socket
    import struct

    import boto3

    from slotguard.aws.secrets import database_admin_url

    # Given a server posing as the instance (the deploy connects with TLS but cannot verify the
    # instance's certificate) that asks for the password in clear text, and records what it gets
    def impostor(listener: socket.socket, received: list[bytes]) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(8192)  # the startup packet (no TLS: the test connects with sslmode=disable)
            conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            conn.settimeout(5)
            try:
                received.append(conn.recv(8192))
            except OSError:
                received.append(b"")

    def attempt(require_auth: str | None) -> bytes:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        secret = boto3.client("secretsmanager").create_secret(
            Name=f"slotguard/test/impostor-{uuid.uuid4().hex[:8]}",
            SecretString=json.dumps(
                {"host": "127.0.0.1", "port": port, "username": "admin", "password": "the-master-password"}
            ),
        )
        url = database_admin_url(secret["ARN"], "disable", require_auth=require_auth)
        received: list[bytes] = []
        server = threading.Thread(target=impostor, args=(listener, received))
        server.start()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=5)
        server.join(10)
        listener.close()
        return received[0] if received else b""

    # When the deploy's login meets it: without a method list libpq hands the password over
    assert b"the-master-password" in attempt(None)
    # Then with the deploy's list (SCRAM or MD5 only) it refuses and sends nothing of it
    assert b"the-master-password" not in attempt("scram-sha-256,md5")


# --- Function files: each function's current definition in one file (issue 20, item 0) ---

FUNCTIONS_QUERY = """
    SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid),
           p.proowner::regrole::text, coalesce(array_to_string(p.proacl, ','), '')
      FROM pg_proc p WHERE p.pronamespace = 'slotguard'::regnamespace ORDER BY 1, 2"""


def functions_of(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(FUNCTIONS_QUERY).fetchall()


def _defined_in(text: str) -> list[str]:
    return re.findall(r"CREATE (?:OR REPLACE )?FUNCTION slotguard\.(\w+)\(", text)


@pytest.fixture
def second_db(pg: Any) -> Iterator[str]:
    yield from scratch_database(pg)


def test_a_database_migrated_step_by_step_and_a_fresh_one_have_identical_functions(
    fresh_db: str, second_db: str
) -> None:
    migrations = load_migrations()
    deployed = [m for m in migrations if m.version <= LAST_MIGRATION_WITH_FUNCTIONS]
    # Given a database migrated the way deployed ones were: one numbered file per deploy from
    # 0001 to 0012, by the runner before function files (it applied none)
    for i in range(1, len(deployed) + 1):
        assert run_migrations(fresh_db, deployed[:i], functions=[]).versions == [deployed[i - 1].version]
    # When today's runner runs on it
    run = run_migrations(fresh_db)
    # Then it applies the newer numbered files and every function file, in one run
    assert run.versions == [m.version for m in migrations[len(deployed) :]]
    assert run.functions == list(FUNCTION_FILES)
    # And its functions are those of a database built from nothing today: every definition
    # (pg_get_functiondef), owner and grant
    assert run_migrations(second_db).versions == [m.version for m in migrations]
    stepwise, fresh = functions_of(fresh_db), functions_of(second_db)
    assert [row[:2] for row in stepwise] == [row[:2] for row in fresh]
    for a, b in zip(stepwise, fresh, strict=True):
        assert a == b, f"{a[0]}({a[1]}) differs"


def test_every_function_of_the_schema_is_defined_in_exactly_one_function_file(pg: Any) -> None:
    # Given the function files and the test database (migrated by the runner)
    defined: dict[str, list[str]] = {}
    for f in load_function_files():
        for name in _defined_in(f.text):
            defined.setdefault(name, []).append(f.name)
    # Then each function is defined in one file (its overloads beside each other, e.g. the form the
    # previous release calls and today's)
    assert {n: files for n, files in defined.items() if len(set(files)) > 1} == {}
    # And the schema has exactly these functions: none lives only in a numbered migration
    with psycopg.connect(pg.admin_url) as conn:
        in_db = {
            r[0]
            for r in conn.execute(
                "SELECT proname FROM pg_proc WHERE pronamespace = 'slotguard'::regnamespace"
            )
        }
    assert in_db == set(defined)


def test_numbered_migrations_after_0012_define_no_functions() -> None:
    # Given the numbered migrations written since function files exist
    later = [m for m in load_migrations() if m.version > LAST_MIGRATION_WITH_FUNCTIONS]
    # Then none defines a function: its current definition belongs in sql/functions/
    offenders = {f"{m.version:04d}_{m.name}": _defined_in(m.text) for m in later if _defined_in(m.text)}
    assert offenders == {}, "define functions in layers/slotguard/sql/functions/, not in a numbered migration"


def test_the_function_files_order_is_stated_in_their_folder() -> None:
    # Given the folder's README and the runner's list
    readme = (FUNCTIONS_DIR / "README.md").read_text()
    match = re.search(
        r"Order: `FUNCTION_FILES` in `slotguard/db/migrate.py`, which is ([a-z_,\s]+?)\s\(", readme
    )
    assert match, "the README states the order"
    stated = [name.strip() for name in match[1].replace("\n", " ").split(",")]
    # Then they agree, and name every file of the folder
    assert [f"{name}.sql" for name in stated] == list(FUNCTION_FILES)
    assert sorted(p.name for p in FUNCTIONS_DIR.glob("*.sql")) == sorted(FUNCTION_FILES)


def test_a_changed_function_file_is_applied_again_alone(fresh_db: str) -> None:
    # Given a migrated database
    functions = load_function_files()
    run_migrations(fresh_db)
    # When one function file changes (a new comment in a function's body)
    index = FUNCTION_FILES.index("conflicts.sql")
    text = functions[index].text.replace("BEGIN\n", "BEGIN\n    -- changed\n", 1)
    changed = [*functions[:index], FunctionFile("conflicts.sql", text), *functions[index + 1 :]]
    run = run_migrations(fresh_db, functions=changed)
    # Then that file alone is applied, and the database holds its new definition
    assert run == run.__class__(versions=[], functions=["conflicts.sql"])
    with psycopg.connect(fresh_db) as conn:
        body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = '_conflicts'").fetchone()
    assert body is not None and "-- changed" in body[0]
    # And a run with the same files again applies nothing
    assert run_migrations(fresh_db, functions=changed) == run.__class__([], [])


def test_a_numbered_migration_never_leaves_another_definition_than_the_files(fresh_db: str) -> None:
    migrations = load_migrations()
    run_migrations(fresh_db)
    before = functions_of(fresh_db)
    # Given a new numbered migration that (against the rule) replaces a function
    rogue = Migration(
        9998,
        "rogue",
        "SET LOCAL ROLE slotguard_owner;\n"
        "CREATE OR REPLACE FUNCTION slotguard._set_lock_wait(p_ms integer) RETURNS void LANGUAGE sql\n"
        "SET search_path = pg_catalog, slotguard, pg_temp AS $$ SELECT NULL::void $$;\n",
    )
    # When it is applied
    run = run_migrations(fresh_db, [*migrations, rogue])
    # Then every function file is applied after it, in the same run, and the functions are the files'
    assert run.versions == [9998]
    assert run.functions == list(FUNCTION_FILES)
    assert functions_of(fresh_db) == before


def test_a_failing_function_file_rolls_back_the_whole_run(fresh_db: str) -> None:
    migrations = load_migrations()
    functions = load_function_files()
    run_migrations(fresh_db, migrations[:-1], functions=[])  # (today's files need the last migration)
    before = functions_of(fresh_db)
    # Given a pending numbered migration and a function file that fails
    broken = [*functions, FunctionFile("broken.sql", "SELECT 1/0;")]
    # When the runner applies them
    with pytest.raises(psycopg.errors.DivisionByZero):
        run_migrations(fresh_db, migrations, broken)
    # Then neither is applied nor recorded: the database is as it was
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT max(version) FROM public.slotguard_schema_migrations").fetchone() == (
            migrations[-2].version,
        )
        recorded = conn.execute("SELECT name FROM public.slotguard_schema_functions").fetchall()
    assert "broken.sql" not in {r[0] for r in recorded}
    assert functions_of(fresh_db) == before


def test_the_deploy_digest_covers_the_function_files() -> None:
    # Given the files the deploy-time custom resource carries the digest of
    functions = load_function_files()
    edited = [
        FunctionFile(f.name, f.text + "\n-- edited\n") if f.name == "booking.sql" else f for f in functions
    ]
    # Then an edited function file is a new digest (an Update: the migrations function runs)
    assert migrations_digest(functions=edited) != migrations_digest()
    assert migrations_digest(functions=functions) == migrations_digest()


def test_the_deploy_migrations_apply_a_changed_function_file(deploy_migrations: Any, fresh_db: str) -> None:
    from slotguard_local.events import LambdaContext

    # Given a database the deploy migrated before function files existed
    run_migrations(fresh_db, functions=[])
    # When the custom resource runs with this release's files
    out = deploy_migrations.lambda_handler(_event("Update", migrations_digest(), "db-A"), LambdaContext())
    # Then it applies every function file and no numbered one
    assert out["Data"] == {"Applied": "none", "FunctionFiles": ",".join(FUNCTION_FILES)}
