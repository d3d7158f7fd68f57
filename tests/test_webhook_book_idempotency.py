"""A booking webhook's own idempotency: its webhook id is its Idempotency-Key, in a space of its
own. The processor commits a booking and its delivery's completion together, so a redelivery
normally stops at the claim; this is the layer under it, called as the processor calls it, on the
real database as the app role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from slotguard.config import DatabaseSettings
from slotguard.db.booking_repository import BookingRepository
from slotguard.db.connection import Database
from slotguard.services import webhook_events
from slotguard.services.webhook_events import EventContext
from tests.conftest import ApiClient, Org, PgInstance
from tests.webhook_support import book_data


@pytest.fixture
def bookings(pg: PgInstance) -> Iterator[BookingRepository]:
    db = Database(DatabaseSettings(database_url=pg.app_url))
    yield BookingRepository(db)
    db.close()


def test_a_booking_webhook_handled_twice_books_once_and_the_second_is_the_replay(
    bookings: BookingRepository, org: Org
) -> None:
    # Given a booking webhook's event, handled once
    ctx = EventContext(uuid.UUID(org.org_id), f"msg_{uuid.uuid4().hex}", bookings)
    event = book_data("2031-07-01T10:00:00Z")
    first = webhook_events.book(ctx, event)
    # When it is handled again (a redelivery past its claim)
    second = webhook_events.book(ctx, event)
    # Then it is applied both times, the second as the replay of the one appointment booked
    assert (first.result, first.detail["status"]) == ("applied", "created")
    assert (second.result, second.detail["status"]) == ("applied", "replayed")
    assert second.detail["appointment_id"] == first.detail["appointment_id"]


def test_a_webhook_id_used_as_an_api_idempotency_key_is_another_key(
    bookings: BookingRepository, api: ApiClient, org: Org
) -> None:
    # Given an API booking whose Idempotency-Key happens to equal a webhook's id
    job_id = f"msg_{uuid.uuid4().hex}"
    res = api.post(
        "/appointments", json_body=book_data("2031-07-02T10:00:00Z"), headers={"Idempotency-Key": job_id}
    )
    assert res.status == 201, res.body
    # When that webhook books another slot
    outcome = webhook_events.book(
        EventContext(uuid.UUID(org.org_id), job_id, bookings), book_data("2031-07-02T12:00:00Z")
    )
    # Then it books (the two keys live in different spaces), neither a replay nor a reused key
    assert (outcome.result, outcome.detail["status"]) == ("applied", "created")
    assert outcome.detail["appointment_id"] != res.body["id"]
