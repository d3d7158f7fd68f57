"""RDS Proxy never pins a connection: what the functions send the database, read where it
arrives. The proxy pins a client's connection to one database connection for the rest of its
session when it sees session state: `SET` (or `set_config` outside a transaction), `PREPARE` and
named prepared statements, session-level advisory locks, `LISTEN`, temporary tables. The server
logs every statement the application role sends, as it receives it, while the booking,
webhook and metrics paths run."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import psycopg
import pytest

from slotguard_local.functions import load_function
from tests.conftest import ApiClient, PgInstance, new_org

# Statement lines as PostgreSQL logs them with log_statement = 'all':
#   "LOG:  statement: <sql>"                       simple query protocol
#   "LOG:  execute <unnamed>: <sql>"               extended protocol, unnamed statement
#   "LOG:  execute s1: <sql>" / "execute S_1: ..."  extended protocol, a NAMED prepared statement
STATEMENT = re.compile(r"LOG:  (statement|execute ([^:]+)): (.*)")
ALLOWED = re.compile(r"^(SELECT slotguard\.[a-z_]+\(|BEGIN\b|COMMIT\b|ROLLBACK\b)", re.I)


@pytest.fixture
def app_role_statements(pg: PgInstance, admin_conn: psycopg.Connection[Any]) -> Any:
    if pg.log_file is None:
        pytest.skip("reads the embedded server's log (DATABASE_URL is external)")
    log_file = pg.log_file
    admin_conn.execute("ALTER ROLE slotguard_app SET log_statement = 'all'")  # new sessions only
    start = log_file.stat().st_size

    def read() -> list[tuple[str, str]]:
        time.sleep(0.2)  # the server writes its log asynchronously to us
        text = log_file.read_bytes()[start:].decode(errors="replace")
        found = []
        for match in STATEMENT.finditer(text):
            name = match.group(2) or ""
            found.append((name, match.group(3).strip()))
        return found

    yield read
    admin_conn.execute("ALTER ROLE slotguard_app RESET log_statement")


def test_the_functions_send_nothing_that_pins_a_proxy_connection(
    app_role_statements: Any, pipeline: Any
) -> None:
    # Given fresh containers (new database sessions, so the role's logging applies to them)
    org = new_org()
    member = ApiClient(load_function("booking"), org.member)
    admin_metrics = ApiClient(load_function("metrics"), org.admin)
    # When the booking paths run: book, conflict, read, list, availability, slots, reschedule,
    # cancel, history
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2034-06-01T10:00:00Z", "duration_minutes": 60}
    booked = member.post("/appointments", json_body=body, headers={"idempotency-key": "pin-1"})
    assert booked.status == 201
    assert member.post("/appointments", json_body=body).status == 409
    appointment = booked.body["id"]
    assert member.get(f"/appointments/{appointment}").status == 200
    assert member.get("/appointments").status == 200
    check = {"start": "2034-06-01T10:30:00Z", "duration_minutes": "15"}
    assert member.get("/availability/check", query=check).status == 200
    window = {"from": "2034-06-01T08:00:00Z", "to": "2034-06-01T18:00:00Z", "duration_minutes": "30"}
    assert member.get("/availability/slots", query=window).status == 200
    moved = member.post(
        f"/appointments/{appointment}/reschedule", json_body={"scheduled_at": "2034-06-01T14:00:00Z"}
    )
    assert moved.status == 200
    assert member.post(f"/appointments/{moved.body['appointment']['id']}/cancel", json_body={}).status == 200
    assert member.get(f"/appointments/{appointment}/history").status == 200
    # And the webhook paths: receive, process (claim, apply, complete), dead-letter, the metrics
    org_id, secret = pipeline.new_org()
    pipeline.send(
        org_id,
        secret,
        "appointment.book",
        {
            "contact_id": str(uuid.uuid4()),
            "scheduled_at": "2034-06-02T09:00:00Z",
            "duration_minutes": 30,
        },
    )
    pipeline.send(org_id, secret, "appointment.book", {"scheduled_at": "not a time"})
    source = pipeline.event_source()
    pipeline.drain(
        source,
        until=lambda: (
            all(r["status"] in ("completed", "dead_letter") for r in pipeline.rows(org_id))
            and len(pipeline.rows(org_id)) == 2
        ),
    )
    for path in ("delivery-stats", "processing-time", "recent-failures", "dead-letter-queue"):
        assert admin_metrics.get(f"/webhook-metrics/{path}").status == 200
    # Then the database received only calls of the SQL API's functions (and the transaction
    # brackets around a batch), every one unnamed: no SET, no PREPARE, no named statement,
    # no advisory lock, LISTEN or temporary table of the session's own
    statements = app_role_statements()
    assert len(statements) >= 15, statements
    named = [(name, sql) for name, sql in statements if name and name != "<unnamed>"]
    assert not named, named
    other = [sql for _, sql in statements if not ALLOWED.match(sql)]
    assert not other, other
