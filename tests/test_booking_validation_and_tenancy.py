"""Bad input is a clear 4xx and writes nothing; callers are who their token says; tenants
never see each other, also when the app role queries the tables directly."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from tests.conftest import ApiClient, Org, new_org


def count_rows(admin_conn: Any, org: Org) -> int:
    row = admin_conn.execute(
        "SELECT count(*) FROM slotguard.appointments WHERE org_id = %s", (org.org_id,)
    ).fetchone()
    return int(row[0])


def valid(**overrides: Any) -> dict[str, Any]:
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2030-01-07T10:00:00Z", "duration_minutes": 30}
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (valid(scheduled_at="2030-01-07T10:00:00"), "scheduled_at"),  # naive
        (valid(scheduled_at="next tuesday"), "scheduled_at"),
        (valid(duration_minutes=0), "duration_minutes"),
        (valid(duration_minutes=1441), "duration_minutes"),
        (valid(duration_minutes="30"), "duration_minutes"),
        (valid(contact_id="not-a-uuid"), "contact_id"),
        (valid(resource_id="123"), "resource_id"),
        (valid(notes="x" * 2001), "notes"),
        (valid(metadata={"blob": "x" * 9000}), "metadata"),
        (valid(metadata=["not", "an", "object"]), "metadata"),
        (valid(colour="blue"), "colour"),  # unknown fields are refused
        ({"scheduled_at": "2030-01-07T10:00:00Z", "duration_minutes": 30}, "contact_id"),
    ],
)
def test_invalid_booking_is_422_and_writes_nothing(
    api: ApiClient, admin_conn: Any, org: Org, body: dict[str, Any], field: str
) -> None:
    # When the body is invalid
    res = api.post("/appointments", json_body=body)
    # Then the answer is 422 naming the field, in the error body of the contract
    assert res.status == 422, res.body
    assert res.body["error"]["code"] == "validation_error"
    assert any(field in e["loc"] for e in res.body["error"]["details"]["errors"]), res.body
    # And nothing was written
    assert count_rows(admin_conn, org) == 0


@pytest.mark.parametrize("raw", ["{not json", '{"contact_id": ', ""])
def test_malformed_json_is_400(api: ApiClient, admin_conn: Any, org: Org, raw: str) -> None:
    res = api.post("/appointments", raw_body=raw)
    assert res.status in (400, 422)
    if raw:
        assert res.status == 400
        assert res.body["error"]["code"] == "malformed_json"
    assert count_rows(admin_conn, org) == 0


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/availability/check", {"start": "2030-01-01T10:00:00", "duration_minutes": 30}),
        ("/availability/check", {"start": "2030-01-01T10:00:00Z", "duration_minutes": 0}),
        ("/appointments", {"resource_id": "nope"}),
        ("/appointments", {"limit": 0}),
        ("/appointments", {"cursor": "!!!"}),
        ("/appointments", {"cursor": ""}),
        ("/appointments", {"status": "deleted"}),
    ],
)
def test_invalid_queries_are_422(api: ApiClient, path: str, query: dict[str, Any]) -> None:
    res = api.get(path, query=query)
    assert res.status == 422, res.body
    assert res.body["error"]["code"] == "validation_error"


def test_invalid_uuid_in_path_is_422(api: ApiClient) -> None:
    assert api.get("/appointments/not-a-uuid").status == 422
    assert api.post("/appointments/not-a-uuid/cancel", json_body={}).status == 422


def test_unknown_appointment_is_404(api: ApiClient) -> None:
    res = api.get(f"/appointments/{uuid.uuid4()}")
    assert res.status == 404
    assert res.body["error"]["code"] == "not_found"


def test_idempotency_key_too_long_is_422(api: ApiClient) -> None:
    res = api.post("/appointments", json_body=valid(), headers={"idempotency-key": "k" * 256})
    assert res.status == 422


@pytest.mark.parametrize(
    "claims",
    [None, {}, {"sub": "u1"}, {"org_id": str(uuid.uuid4())}, {"sub": "u1", "org_id": "not-a-uuid"}],
)
def test_missing_or_bad_claims_are_401(booking_fn: Any, admin_conn: Any, claims: Any) -> None:
    client = ApiClient(booking_fn, claims)
    res = client.post("/appointments", json_body=valid())
    assert res.status == 401
    assert res.body["error"]["code"] == "unauthorized"
    assert client.get("/appointments").status == 401


def test_another_orgs_appointment_is_404_everywhere(booking_fn: Any, api: ApiClient) -> None:
    # Given an appointment of org A
    appt = api.post("/appointments", json_body=valid()).body
    intruder = ApiClient(booking_fn, new_org().admin)
    # Then org B (even its admin) cannot see or touch it
    assert intruder.get(f"/appointments/{appt['id']}").status == 404
    assert intruder.post(f"/appointments/{appt['id']}/cancel", json_body={}).status == 404
    assert (
        intruder.post(
            f"/appointments/{appt['id']}/reschedule", json_body={"scheduled_at": "2030-05-01T10:00:00Z"}
        ).status
        == 404
    )
    assert intruder.get(f"/appointments/{appt['id']}/history").status == 404
    assert intruder.get("/appointments").body["items"] == []
    # And it is unchanged for its owner
    assert api.get(f"/appointments/{appt['id']}").body == appt


TABLES = (
    "appointments",
    "appointment_audit",
    "booking_idempotency_keys",
    "webhook_delivery_log",
    "webhook_redrive_audit",
)


def test_the_app_role_reads_no_table_directly_whatever_tenant_it_claims(api: ApiClient, pg: Any) -> None:
    # Given appointments of two orgs
    api.post("/appointments", json_body=valid(notes="private"))
    other = new_org()
    with psycopg.connect(pg.app_url, autocommit=True) as conn:
        conn.execute(
            "SELECT slotguard.book_appointment_with_lock(%s, 'test', %s, NULL, %s, 30)",
            (other.org_id, uuid.uuid4(), "2030-01-07T10:00:00Z"),
        )
        # The app role is neither superuser nor owner of the tables
        role = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert role == (False, False)
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'appointments'").fetchone()
        assert owner == ("slotguard_owner",)
        # When it claims another org's tenant, as any session may set a GUC
        conn.execute("SELECT set_config('slotguard.org_id', %s, false)", (other.org_id,))
        # Then no table can be read or written directly: every read goes through the functions
        for table in TABLES:
            for statement in (
                f"SELECT * FROM slotguard.{table}",
                f"DELETE FROM slotguard.{table}",
                f"UPDATE slotguard.{table} SET org_id = org_id",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO slotguard.appointments (org_id) VALUES (gen_random_uuid())")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT slotguard._lock_calendar(gen_random_uuid(), NULL, now(), now())")
        # And the functions still answer only for the org passed to them
        own = conn.execute(
            "SELECT slotguard.list_appointments(%s, NULL, NULL, NULL, NULL, 50)", (api.claims["org_id"],)
        ).fetchone()[0]
        assert [a["notes"] for a in own] == ["private"]


def test_the_app_role_has_a_statement_timeout(pg: Any) -> None:
    # Given the application's login
    with psycopg.connect(pg.app_url, autocommit=True) as conn:
        # Then no statement of it may run away with the shared database
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(6)")


def test_api_functions_are_security_definer_with_fixed_search_path(admin_conn: Any) -> None:
    rows = admin_conn.execute(
        """SELECT p.proname, p.prosecdef, p.proconfig,
                  has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'slotguard'"""
    ).fetchall()
    assert rows
    for name, secdef, config, public_exec in rows:
        assert any(c.startswith("search_path=pg_catalog") for c in (config or [])), name
        assert public_exec is False, name
        if name in {"book_appointment_with_lock", "cancel_appointment", "reschedule_appointment"}:
            assert secdef, name
