"""A connection lost while a statement is in flight, caused for real (tests/connection_cutter.py:
the statement runs, its answer is lost with the connection). Every read and every write whose
repeat is a no-op is sent again, once, on a fresh connection, and answers as if nothing happened;
a write whose repeat could apply twice is never sent again (503 database_unavailable: the caller
retries, with an Idempotency-Key when it needs one)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from slotguard.config import DatabaseSettings
from slotguard.db.booking_repository import BookingRepository
from slotguard.db.connection import Database
from slotguard.db.webhook_repository import WebhookRepository
from slotguard.errors import DatabaseUnavailable
from slotguard.models import BookRequest
from tests.conftest import PgInstance
from tests.connection_cutter import ConnectionCutter

ORG = uuid.uuid4()
WHEN = datetime(2033, 3, 1, 10, tzinfo=UTC)


class Repos:
    def __init__(self, db: Database, retention: Database) -> None:
        self.bookings = BookingRepository(db)
        self.webhooks = WebhookRepository(db)
        self.retention = WebhookRepository(retention)  # the cleanup function's login role


@pytest.fixture
def cutter(pg: PgInstance) -> Iterator[ConnectionCutter]:
    proxy = ConnectionCutter.before(pg.app_url)
    yield proxy
    proxy.stop()


@pytest.fixture
def repos(pg: PgInstance, cutter: ConnectionCutter) -> Iterator[Repos]:
    url = cutter.url(pg.app_url)
    db = Database(DatabaseSettings(database_url=url))
    retention = Database(
        DatabaseSettings(database_url=psycopg.conninfo.make_conninfo(url, user="slotguard_retention"))
    )
    yield Repos(db, retention)
    db.close()
    retention.close()


def book(r: Repos) -> dict[str, Any]:
    """A new appointment, on a calendar of its own; its row."""
    request = BookRequest(
        contact_id=uuid.uuid4(), resource_id=uuid.uuid4(), scheduled_at=WHEN, duration_minutes=30
    )
    result = r.bookings.book(org_id=ORG, actor="user-1", request=request, idempotency_key=None)
    assert result["status"] == "created", result
    appointment: dict[str, Any] = result["appointment"]
    return appointment


# Reads, and writes whose repeat is a no-op (it answers as a second call does): one call each.
RETRIED: dict[str, Callable[[Repos, dict[str, Any]], Any]] = {
    "get": lambda r, a: r.bookings.get(org_id=ORG, appointment_id=a["id"]),
    "list_page": lambda r, a: r.bookings.list_page(
        org_id=ORG, start=None, end=None, resource_id=None, status=None, limit=10, after=None
    ),
    "history": lambda r, a: r.bookings.history(org_id=ORG, appointment_id=a["id"]),
    "check_availability": lambda r, a: r.bookings.check_availability(
        org_id=ORG, resource_id=None, start=WHEN, duration_minutes=30
    ),
    "free_slots": lambda r, a: r.bookings.free_slots(
        org_id=ORG,
        resource_id=None,
        start=WHEN,
        end=WHEN + timedelta(hours=2),
        duration_minutes=30,
        step_minutes=30,
        limit=10,
    ),
    "get_calendar_rules": lambda r, a: r.bookings.get_calendar_rules(org_id=ORG, resource_id=None),
    "calendar_rules_history": lambda r, a: r.bookings.calendar_rules_history(org_id=ORG, resource_id=None),
    "get_org_policy": lambda r, a: r.bookings.get_org_policy(org_id=ORG),
    "set_org_policy": lambda r, a: r.bookings.set_org_policy(
        org_id=ORG, actor="admin-1", contact_no_overlap=False
    ),
    "cancel": lambda r, a: r.bookings.cancel(org_id=ORG, actor="user-1", appointment_id=a["id"], reason=None),
    "release": lambda r, a: r.webhooks.release(org_id=ORG, job_id="msg_none", token=uuid.uuid4()),
    "dead_letter": lambda r, a: r.webhooks.dead_letter(
        org_id=ORG,
        job_id="msg_dead_" + str(a["id"]),
        event_type="appointment.book",
        event_data={},
        max_attempts=5,
        receive_count=50,
        error="poison",
    ),
    "purge_expired": lambda r, a: r.retention.purge_expired("completed", timedelta(days=30), 10),
    "settle_stale_redrive_marks": lambda r, a: r.retention.settle_stale_redrive_marks(3600, 10),
    "delivery_stats": lambda r, a: r.webhooks.delivery_stats(ORG, timedelta(hours=1), timedelta(minutes=5)),
    "processing_time": lambda r, a: r.webhooks.processing_time(ORG, timedelta(hours=1)),
    "processing_time_trend": lambda r, a: r.webhooks.processing_time_trend(
        ORG, timedelta(hours=1), timedelta(minutes=5)
    ),
    "failures": lambda r, a: r.webhooks.failures(ORG, ["dead_letter"], 10, False),
    "delivery": lambda r, a: r.webhooks.delivery(ORG, "msg_none"),
    "status_counts": lambda r, a: r.webhooks.status_counts(ORG),
    "redrive_pending_count": lambda r, a: r.webhooks.redrive_pending_count(ORG, 10, 600),
    "redrive_settle": lambda r, a: r.webhooks.redrive_settle(ORG, "admin-1", [], []),
    "redrive_history": lambda r, a: r.webhooks.redrive_history(ORG, "msg_none"),
}


@pytest.mark.parametrize("method", sorted(RETRIED))
def test_a_statement_whose_answer_is_lost_is_sent_again_when_a_repeat_changes_nothing(
    repos: Repos, cutter: ConnectionCutter, method: str
) -> None:
    # Given an appointment, and the call made once on a sound connection
    appointment = book(repos)
    call = RETRIED[method]
    call(repos, appointment)
    connections = cutter.connections
    # When the call is made again and the connection is cut with its statement in flight, after the
    # server ran it
    cutter.arm()
    got = call(repos, appointment)
    # Then the statement was sent again on a new connection, and the call answers as a repeat on a
    # sound connection does
    assert (cutter.cuts, cutter.connections) == (1, connections + 1)
    assert _without_times(got) == _without_times(call(repos, appointment))


def test_a_booking_with_a_key_whose_answer_is_lost_is_replayed_not_booked_twice(
    repos: Repos, cutter: ConnectionCutter
) -> None:
    # Given a booking with an Idempotency-Key, whose answer is lost after the server booked it
    cutter.arm()
    key = f"key-{uuid.uuid4()}"
    request = BookRequest(
        contact_id=uuid.uuid4(), resource_id=uuid.uuid4(), scheduled_at=WHEN, duration_minutes=30
    )
    got = repos.bookings.book(org_id=ORG, actor="user-1", request=request, idempotency_key=key)
    # Then it was sent again with its key, and the answer is the replay of the one booking made
    assert (cutter.cuts, cutter.connections) == (1, 2)
    assert got["status"] == "replayed", got
    [listed] = [
        a
        for a in repos.bookings.list_page(
            org_id=ORG, start=None, end=None, resource_id=None, status=None, limit=200, after=None
        )
        if a["contact_id"] == str(request.contact_id)
    ]
    assert listed["id"] == got["appointment"]["id"]


NOT_RETRIED: dict[str, Callable[[Repos, dict[str, Any]], Any]] = {
    "book without a key": lambda r, a: book(r),
    "reschedule": lambda r, a: r.bookings.reschedule(
        org_id=ORG,
        actor="user-1",
        appointment_id=a["id"],
        scheduled_at=WHEN + timedelta(hours=2),
        duration_minutes=None,
    ),
    "set_calendar_rules": lambda r, a: r.bookings.set_calendar_rules(
        org_id=ORG, actor="admin-1", resource_id=None, rules={"buffer_before_minutes": 5}
    ),
    "claim": lambda r, a: r.webhooks.claim(
        org_id=ORG,
        job_id=f"msg_{uuid.uuid4().hex}",
        event_type="appointment.book",
        event_data={},
        max_attempts=5,
        stale_after_s=180,
    ),
    "claim_batch": lambda r, a: r.webhooks.claim_batch(
        [
            {
                "org_id": str(ORG),
                "job_id": f"msg_{uuid.uuid4().hex}",
                "event_type": "appointment.book",
                "event_data": {},
            }
        ],
        max_attempts=5,
        stale_after_s=180,
    ),
    "complete": lambda r, a: r.webhooks.complete(
        org_id=ORG, job_id="msg_none", token=uuid.uuid4(), outcome="applied", detail={}, processing_ms=1
    ),
    "fail": lambda r, a: r.webhooks.fail(
        org_id=ORG, job_id="msg_none", token=uuid.uuid4(), error="boom", dead=False, processing_ms=1
    ),
}


@pytest.mark.parametrize("method", sorted(NOT_RETRIED))
def test_a_write_whose_repeat_could_apply_twice_is_not_sent_again(
    repos: Repos, cutter: ConnectionCutter, method: str
) -> None:
    # Given an appointment
    appointment = book(repos)
    # When the connection is cut with the write in flight, after the server ran it
    cutter.arm()
    # Then the caller is told the database is unavailable (503: it may retry), and it went out once
    with pytest.raises(DatabaseUnavailable):
        NOT_RETRIED[method](repos, appointment)
    assert (cutter.cuts, cutter.connections) == (1, 1)


def _without_times(value: Any) -> Any:
    """An answer minus what a second reading may say differently (the time it was read)."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in ("since", "until")}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value
