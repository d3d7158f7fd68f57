"""The error codes no other test produced, each caused for real through the booking function:
`route_not_found`, `internal_error` and `busy` from a statement the database cancelled."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg

from tests.conftest import ApiClient


def booked(api: ApiClient) -> str:
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2033-05-01T10:00:00Z", "duration_minutes": 30}
    answer = api.post("/appointments", json_body=body)
    assert answer.status == 201, answer.body
    return str(answer.body["id"])


def test_a_path_the_function_does_not_serve_is_route_not_found(api: ApiClient) -> None:
    # When the booking function is handed a path none of its routes has (the gateway normally
    # answers first: a route that reaches the wrong function)
    answer = api.get("/webhook-metrics/queue-health")
    # Then it is 404 route_not_found, in the error envelope
    assert answer.status == 404
    assert answer.body == {"error": {"code": "route_not_found", "message": "no such route", "details": {}}}


def test_an_unexpected_database_error_is_internal_error_with_nothing_internal(
    api: ApiClient, admin_conn: psycopg.Connection[Any]
) -> None:
    appointment = booked(api)
    # Given the app role lost its right to call one of the SQL API's functions (a broken deploy)
    admin_conn.execute("REVOKE EXECUTE ON FUNCTION slotguard.get_appointment(uuid, uuid) FROM slotguard_app")
    try:
        # When a client reads the appointment
        answer = api.get(f"/appointments/{appointment}")
    finally:
        admin_conn.execute("GRANT EXECUTE ON FUNCTION slotguard.get_appointment(uuid, uuid) TO slotguard_app")
    # Then it is 500 internal_error, and the answer says nothing of the cause
    assert answer.status == 500
    assert answer.body == {
        "error": {"code": "internal_error", "message": "an unexpected error occurred", "details": {}}
    }
    # And the next request works again
    assert api.get(f"/appointments/{appointment}").status == 200


def test_a_statement_past_its_timeout_is_busy_with_retry_after(api: ApiClient, pg: Any) -> None:
    appointment = booked(api)
    # Given another session holds the appointments table (a long migration, say) beyond the app
    # role's 5 s statement timeout
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(pg.admin_url) as conn:
            conn.execute("LOCK TABLE slotguard.appointments IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        # When a client reads an appointment
        answer = api.get(f"/appointments/{appointment}")
    finally:
        release.set()
        holder.join()
    # Then the database cancelled the statement, and the client is told to retry: 503 busy
    assert answer.status == 503, answer.body
    assert answer.body == {
        "error": {
            "code": "busy",
            "message": "the database took too long to answer, retry shortly",
            "details": {},
        }
    }
    assert int(answer.headers["Retry-After"]) >= 1
    # And the same container answers normally once the table is free
    assert api.get(f"/appointments/{appointment}").status == 200
