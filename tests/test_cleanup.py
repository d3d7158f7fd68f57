"""Retention cleanup (the EventBridge-scheduled function): rows just inside and just
outside each window, deleted in batches across every org."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from slotguard_local.events import LambdaContext
from slotguard_local.functions import load_function


def insert_log(admin: Any, org: uuid.UUID, status: str, age: str) -> str:
    job = f"job-{uuid.uuid4().hex[:8]}"
    admin.execute(
        """INSERT INTO slotguard.webhook_delivery_log
             (org_id, job_id, event_type, event_data, status, attempts, max_attempts, created_at,
              last_attempt_at, completed_at)
           VALUES (%s, %s, 't', '{}', %s, 1, 5, now() - %s::interval - interval '1 minute',
                   now() - %s::interval, CASE WHEN %s = 'completed' THEN now() - %s::interval END)""",
        (org, job, status, age, age, status, age),
    )
    return job


def insert_key(admin: Any, org: uuid.UUID, age: str) -> str:
    appt = admin.execute(
        "SELECT slotguard.book_appointment_with_lock(%s, 't', %s, NULL, now() + %s::interval, 5)",
        (org, uuid.uuid4(), f"{uuid.uuid4().int % 100000} minutes"),
    ).fetchone()[0]
    key = f"key-{uuid.uuid4().hex[:8]}"
    admin.execute(
        """INSERT INTO slotguard.booking_idempotency_keys (org_id, key, request_hash, appointment_id,
                     created_at, expires_at) VALUES (%s, %s, 'h', %s, now() - %s::interval,
                     now() - %s::interval + interval '24 hours')""",
        (org, key, appt["appointment"]["id"], age, age),
    )
    return key


def test_cleanup_deletes_exactly_what_left_its_window(
    pg: Any, admin_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given rows of two orgs just inside and just outside each retention window
    monkeypatch.setenv("CLEANUP_BATCH_SIZE", "2")
    admin_conn.execute("DELETE FROM slotguard.webhook_delivery_log")
    admin_conn.execute("DELETE FROM slotguard.booking_idempotency_keys")
    orgs = [uuid.uuid4(), uuid.uuid4()]
    keep, drop = set(), set()
    for org in orgs:
        keep.add(insert_log(admin_conn, org, "completed", "7 days - 1 minute"))
        drop.update(insert_log(admin_conn, org, "completed", "7 days + 1 minute") for _ in range(3))
        keep.add(insert_log(admin_conn, org, "failed", "30 days - 1 minute"))
        keep.add(insert_log(admin_conn, org, "dead_letter", "30 days - 1 minute"))
        keep.add(insert_log(admin_conn, org, "failed", "8 days"))  # failed rows outlive completed ones
        drop.add(insert_log(admin_conn, org, "failed", "30 days + 1 minute"))
        drop.add(insert_log(admin_conn, org, "dead_letter", "30 days + 1 minute"))
        keep.add(insert_log(admin_conn, org, "processing", "90 days"))  # never a terminal row: kept
    kept_keys = {insert_key(admin_conn, org, "23 hours 59 minutes") for org in orgs}
    dropped_keys = {insert_key(admin_conn, org, "24 hours 1 minute") for org in orgs}
    # When the scheduled cleanup runs (an EventBridge scheduled event)
    cleanup = load_function("cleanup")
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "2030-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:000000000000:rule/cleanup"],
        "detail": {},
    }
    report = cleanup.lambda_handler(event, LambdaContext(function_name="cleanup"))
    # Then exactly the expired rows are gone, across both orgs, in batches of two
    assert report["completed_deleted"] == 6
    assert report["failed_deleted"] == 4
    assert report["idempotency_keys_deleted"] == 2
    assert report["batches"] >= 4 + 3 + 2
    left = {r[0] for r in admin_conn.execute("SELECT job_id FROM slotguard.webhook_delivery_log")}
    assert left == keep
    assert not left & drop
    keys = {r[0] for r in admin_conn.execute("SELECT key FROM slotguard.booking_idempotency_keys")}
    assert keys == kept_keys
    assert not keys & dropped_keys
    # And a second run finds nothing
    again = cleanup.lambda_handler(event, LambdaContext(function_name="cleanup"))
    assert again["completed_deleted"] == again["failed_deleted"] == again["idempotency_keys_deleted"] == 0


def test_the_app_role_cannot_purge_outside_the_function(app_conn: Any) -> None:
    import psycopg

    app_conn.execute("SELECT set_config('slotguard.maintenance', 'on', false)")
    # the maintenance policy applies to the owner only: the app role still sees nothing
    assert app_conn.execute("SELECT count(*) FROM slotguard.webhook_delivery_log").fetchone() == (0,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_conn.execute("DELETE FROM slotguard.webhook_delivery_log")
