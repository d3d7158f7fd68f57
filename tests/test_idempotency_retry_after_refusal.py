"""An Idempotency-Key stores only a booking that was made (README, "Idempotency-Key"): a 409 or
a 503 is not replayed, so a retry with the same key and body runs again and may book; once it
has, that booking is what the key replays."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import psycopg
import pytest

from slotguard_local.functions import load_function
from tests.conftest import ApiClient, Org


@pytest.fixture
def booking_fast(pg: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A booking container whose lock wait is short, so a 503 busy is quick to provoke."""
    monkeypatch.setenv("BOOKING_LOCK_WAIT_MS", "300")
    module = load_function("booking")
    yield module
    module.service._repo._db.close()


def booking(at: str, minutes: int = 60) -> dict[str, Any]:
    return {"contact_id": str(uuid.uuid4()), "scheduled_at": at, "duration_minutes": minutes}


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def test_a_retry_after_a_409_runs_again_and_books_once_the_slot_is_free(api: ApiClient) -> None:
    # Given an appointment holding 10:00-11:00
    holder = api.post("/appointments", json_body=booking("2032-03-01T10:00:00Z"))
    assert holder.status == 201, holder.body
    # And a booking of the same hour with a key, refused for the overlap
    body = booking("2032-03-01T10:30:00Z", 30)
    refused = api.post("/appointments", json_body=body, headers=keyed("after-409"))
    assert refused.status == 409, refused.body
    assert [c["id"] for c in refused.body["error"]["details"]["conflicts"]] == [holder.body["id"]]
    # When the holder is cancelled and the client retries with the same key and body
    assert api.post(f"/appointments/{holder.body['id']}/cancel", json_body={}).status == 200
    retried = api.post("/appointments", json_body=body, headers=keyed("after-409"))
    # Then the retry is not a replay of the 409: it runs again and books
    assert retried.status == 201, retried.body
    assert "Idempotent-Replayed" not in retried.headers
    assert retried.body["scheduled_at"] == "2032-03-01T10:30:00Z"
    # And from now on the key replays that booking
    again = api.post("/appointments", json_body=body, headers=keyed("after-409"))
    assert (again.status, again.body) == (201, retried.body)
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_a_retry_while_the_slot_is_still_taken_is_409_again_not_a_replay(api: ApiClient) -> None:
    # Given a key whose booking was refused with a 409
    holder = api.post("/appointments", json_body=booking("2032-03-02T10:00:00Z")).body
    body = booking("2032-03-02T10:00:00Z")
    assert api.post("/appointments", json_body=body, headers=keyed("still-409")).status == 409
    # When the client retries with the same key while the slot is still taken
    retried = api.post("/appointments", json_body=body, headers=keyed("still-409"))
    # Then it is decided again: a 409 naming the holder, not marked as a replay
    assert retried.status == 409, retried.body
    assert "Idempotent-Replayed" not in retried.headers
    assert [c["id"] for c in retried.body["error"]["details"]["conflicts"]] == [holder["id"]]
    # And the same key with another body is not "reused": nothing was stored for it
    elsewhere = api.post(
        "/appointments", json_body=booking("2032-03-02T15:00:00Z"), headers=keyed("still-409")
    )
    assert elsewhere.status == 201, elsewhere.body


def test_a_retry_after_a_503_busy_runs_again_and_books(pg: Any, booking_fast: ModuleType, org: Org) -> None:
    api = ApiClient(booking_fast, org.member)
    body = booking("2032-03-03T10:30:00Z", 15)
    # Given a writer that skips the calendar lock, with an overlapping row not yet committed (the
    # exclusion constraint makes an overlapping INSERT wait past the container's lock wait)
    holder = psycopg.connect(pg.admin_url)
    try:
        holder.execute(
            "INSERT INTO slotguard.appointments (org_id, contact_id, scheduled_at, ends_at, duration_minutes,"
            " created_by) VALUES (%s, %s, '2032-03-03T10:00:00Z', '2032-03-03T11:00:00Z', 60, 'bypass')",
            (org.org_id, uuid.uuid4()),
        )
        # When a member books the same hour with a key
        busy = api.post("/appointments", json_body=body, headers=keyed("after-503"))
        # Then it is 503 busy
        assert busy.status == 503, busy.body
        assert busy.body["error"]["code"] == "busy"
    finally:
        holder.rollback()  # the other writer gives up: the slot is free
        holder.close()
    # When the client retries with the same key and body
    retried = api.post("/appointments", json_body=body, headers=keyed("after-503"))
    # Then it runs again and books (the 503 was not stored under the key)
    assert retried.status == 201, retried.body
    assert "Idempotent-Replayed" not in retried.headers
    # And the key now replays that booking
    again = api.post("/appointments", json_body=body, headers=keyed("after-503"))
    assert (again.status, again.body) == (201, retried.body)
    assert again.headers.get("Idempotent-Replayed") == "true"
