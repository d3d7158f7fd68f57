"""Guarantees of the SQL contract that the SQL mutants (make mutation-sql) showed no test held:
row-level security forced on every tenant table, and the cross-row maintenance (retention, the
redrive's mark) passing over rows another transaction holds instead of waiting for them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from slotguard_local.events import LambdaContext
from slotguard_local.functions import load_function
from tests.conftest import ApiClient, PgInstance, new_org
from tests.test_cleanup import insert_log
from tests.test_webhook_redrive import seed_dead_letters


def test_row_level_security_is_enabled_and_forced_on_every_table_holding_an_org(
    admin_conn: psycopg.Connection[Any],
) -> None:
    # Given every table of the schema with an org_id column
    tables = admin_conn.execute(
        """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'slotguard' AND c.relkind = 'r'
              AND EXISTS (SELECT 1 FROM pg_attribute a
                           WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped)"""
    ).fetchall()
    assert {"appointments", "webhook_delivery_log", "calendar_rules"} <= {t[0] for t in tables}
    # Then each has row-level security on, forced for its owner too (the SECURITY DEFINER
    # functions run as the owner: without FORCE they would see every org's rows)
    assert [t for t in tables if not (t[1] and t[2])] == []


@contextmanager
def row_held(pg: PgInstance, table: str, where: str, params: tuple[Any, ...]) -> Iterator[None]:
    """Another transaction holding the rows (FOR UPDATE) for the block."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(pg.admin_url) as conn:
            conn.execute(f"SELECT 1 FROM slotguard.{table} WHERE {where} FOR UPDATE", params)
            locked.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        yield
    finally:
        release.set()
        holder.join()


def test_retention_passes_over_a_row_another_transaction_holds(
    pg: PgInstance, admin_conn: psycopg.Connection[Any]
) -> None:
    # Given two completed deliveries past their retention, one of them held by another transaction
    org = uuid.uuid4()
    held = insert_log(admin_conn, org, "completed", "8 days")
    free = insert_log(admin_conn, org, "completed", "8 days")
    cleanup = load_function("cleanup")
    event = {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}, "id": str(uuid.uuid4())}
    with row_held(pg, "webhook_delivery_log", "job_id = %s", (held,)):
        # When the cleanup runs
        started = time.monotonic()
        cleanup.lambda_handler(event, LambdaContext(function_name="cleanup"))
        took = time.monotonic() - started
    # Then it did not wait for the held row: it deleted the other and left that one for next time
    assert took < 5, took
    left = {
        r[0]
        for r in admin_conn.execute(
            "SELECT job_id FROM slotguard.webhook_delivery_log WHERE job_id IN (%s, %s)", (held, free)
        ).fetchall()
    }
    assert left == {held}


def test_a_redrive_passes_over_a_dead_letter_the_processor_holds(pipeline: Any, pg: PgInstance) -> None:
    # Given two dead letters of an org, one held by another transaction (the processor's claim)
    org = new_org()
    held, free = seed_dead_letters(pg.admin_url, org.org_id, 2)
    admin = ApiClient(load_function("metrics"), org.admin)
    with row_held(pg, "webhook_delivery_log", "org_id = %s AND job_id = %s", (org.org_id, held)):
        # When an admin redrives both
        started = time.monotonic()
        answer = admin.post("/webhook-metrics/dead-letter-queue/redrive", json_body={"job_ids": [held, free]})
        took = time.monotonic() - started
    # Then the redrive answered at once with the free one, without waiting for the held one
    assert answer.status == 200, answer.body
    assert answer.body["job_ids"] == [free]
    assert took < 4, took


def test_the_owner_role_reading_as_one_org_sees_no_row_of_another(
    admin_conn: psycopg.Connection[Any], booking_fn: Any
) -> None:
    # Given an appointment of org B (booked through the API)
    org_a, org_b = new_org(), new_org()
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2031-07-01T10:00:00Z", "duration_minutes": 30}
    assert ApiClient(booking_fn, org_b.member).post("/appointments", json_body=body).status == 201
    # When the role the SQL functions run as reads the table with org A as the tenant (as a
    # function does after _set_tenant), with no WHERE on the org
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL ROLE slotguard_owner")
        admin_conn.execute("SELECT set_config('slotguard.org_id', %s, true)", (org_a.org_id,))
        seen = admin_conn.execute("SELECT count(*) FROM slotguard.appointments").fetchone()
        of_b = admin_conn.execute(
            "SELECT count(*) FROM slotguard.appointments WHERE org_id = %s", (org_b.org_id,)
        ).fetchone()
    # Then the tenant policy lets none of B's rows through
    assert of_b == (0,)
    assert seen == (0,)
