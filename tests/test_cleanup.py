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
    key = f"http:key-{uuid.uuid4().hex[:8]}"
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
    # (6 completed: 2 + 2 + 2 + 0; 4 failed: 2 + 2 + 0; 2 keys: 2 + 0)
    assert report["batches"] == 4 + 3 + 2
    left = {r[0] for r in admin_conn.execute("SELECT job_id FROM slotguard.webhook_delivery_log")}
    assert left == keep
    assert not left & drop
    keys = {r[0] for r in admin_conn.execute("SELECT key FROM slotguard.booking_idempotency_keys")}
    assert keys == kept_keys
    assert not keys & dropped_keys
    # And a second run finds nothing
    again = cleanup.lambda_handler(event, LambdaContext(function_name="cleanup"))
    assert again["completed_deleted"] == again["failed_deleted"] == again["idempotency_keys_deleted"] == 0
    assert again["batches"] == 3


def retention_url(pg: Any) -> str:
    import psycopg

    return psycopg.conninfo.make_conninfo(pg.app_url, user="slotguard_retention")


def test_only_the_retention_role_purges_and_never_below_the_floors(pg: Any, admin_conn: Any) -> None:
    import psycopg

    # Given an idempotency key of some org, and a session that switches the old maintenance GUC on
    org = uuid.uuid4()
    key = insert_key(admin_conn, org, "1 hour")
    with psycopg.connect(pg.app_url, autocommit=True) as app:
        app.execute("SELECT set_config('slotguard.maintenance', 'on', false)")
        # Then the application role may not purge anything, nor read the tables
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT slotguard.purge_expired('idempotency_keys', '-1 day', 1000000)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT count(*) FROM slotguard.webhook_delivery_log")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT slotguard.unfinished_webhook_deliveries()")
    with psycopg.connect(retention_url(pg), autocommit=True) as retention:
        # And the retention role may, but never below the floors it promises
        for what, interval in (
            ("idempotency_keys", "-1 day"),
            ("idempotency_keys", "23 hours"),
            ("completed", "1 hour"),
            ("failed", "6 days"),
            ("everything", "30 days"),
        ):
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                retention.execute("SELECT slotguard.purge_expired(%s, %s, 1000)", (what, interval))
        assert retention.execute(
            "SELECT slotguard.purge_expired('idempotency_keys', '24 hours', 10)"
        ).fetchone()
        # And it can do nothing else: no table, no booking function
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            retention.execute("SELECT count(*) FROM slotguard.booking_idempotency_keys")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            retention.execute("SELECT slotguard.get_appointment(%s, %s)", (org, uuid.uuid4()))
    # And the young key is still there
    keys = {r[0] for r in admin_conn.execute("SELECT key FROM slotguard.booking_idempotency_keys")}
    assert key in keys


def test_cleanup_config_refuses_retention_below_the_floors() -> None:
    from pydantic import ValidationError

    from slotguard.config import CleanupConfig

    base = {"DATABASE_URL": "postgresql://x@127.0.0.1/db"}
    assert CleanupConfig.from_env(base).database.db_user == "slotguard_retention"
    for key, value in (
        ("RETENTION_COMPLETED_DAYS", "0.5"),
        ("RETENTION_FAILED_DAYS", "6"),
        ("RETENTION_IDEMPOTENCY_HOURS", "1"),
    ):
        with pytest.raises(ValidationError):
            CleanupConfig.from_env({**base, key: value})
