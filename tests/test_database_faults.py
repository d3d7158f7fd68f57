"""Fault paths caused for real: the database goes away and comes back."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC
from typing import Any

import pytest

from slotguard.config import DatabaseSettings
from slotguard.db.connection import Database, IamTokenProvider, proxy_protocol_options
from tests.conftest import ApiClient, log_records


def test_database_down_is_503_then_recovers_on_the_same_container(pg: Any, api: ApiClient) -> None:
    if pg.stop is None:
        pytest.skip("needs the embedded server, which the test can stop (DATABASE_URL is external)")
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2032-01-01T10:00:00Z", "duration_minutes": 30}
    assert api.post("/appointments", json_body=body).status == 201  # the container's connection is open
    # When the database goes away
    pg.stop(mode="immediate")
    try:
        down = api.post("/appointments", json_body={**body, "scheduled_at": "2032-01-01T12:00:00Z"})
        read = api.get("/appointments")
    finally:
        pg.start()
    # Then callers get 503 with Retry-After, never a 500
    assert down.status == 503
    assert down.body["error"]["code"] == "database_unavailable"
    assert "Retry-After" in down.headers
    assert read.status == 503
    # And once it is back the same container reconnects by itself
    again = api.post("/appointments", json_body={**body, "scheduled_at": "2032-01-01T12:00:00Z"})
    assert again.status == 201
    assert len(api.get("/appointments").body["items"]) == 2


def test_unreachable_database_is_database_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    from slotguard.errors import DatabaseUnavailable

    # Given a database nothing listens for
    db = Database(
        DatabaseSettings(database_url="postgresql://nobody@127.0.0.1:1/none", db_connect_timeout_s=1)
    )
    # When a statement is run, Then it is DatabaseUnavailable (a 503), saying to retry
    with pytest.raises(DatabaseUnavailable, match=r"^the database is unavailable, retry shortly$"):
        db.scalar("SELECT 1", ())
    # And a warning names the driver's error, by its type
    [warning] = log_records(caplog, "database connect failed")
    assert (warning.levelname, warning.error) == ("WARNING", "OperationalError")


def test_iam_tokens_are_cached_and_refreshed_before_expiry() -> None:
    # Given a token source and a clock we control
    now = [0.0]
    issued: list[str] = []

    def generate() -> str:
        issued.append(f"token-{len(issued)}")
        return issued[-1]

    # (a monotonic clock starts anywhere: here at 1000 s)
    now[0] = 1000.0
    provider = IamTokenProvider(generate, refresh_after_s=600, clock=lambda: now[0])
    # Then tokens are reused while fresh and replaced at 10 minutes, before the 15 minute expiry
    assert provider.password() == "token-0"
    now[0] = 1599
    assert provider.password() == "token-0"
    now[0] = 1600
    assert provider.password() == "token-1"
    assert len(issued) == 2
    # And a refresh interval must lie inside the lifetime: any positive time under 15 minutes
    for outside in (0, -1, 900, 901):
        with pytest.raises(ValueError) as refused:
            IamTokenProvider(generate, refresh_after_s=outside)
        assert str(refused.value) == "refresh_after_s must be inside the token's 15 minute lifetime"
    for inside in (0.5, 1, 899):
        IamTokenProvider(generate, refresh_after_s=inside)


def test_iam_auth_is_selected_by_config_and_signs_a_real_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = DatabaseSettings(db_host="proxy.example.internal", db_auth="iam", db_user="slotguard_app")
    from slotguard.db.connection import password_provider_for

    token = password_provider_for(settings).password()
    assert token is not None
    assert token.startswith("proxy.example.internal:5432/?Action=connect&DBUser=slotguard_app")
    assert "X-Amz-Signature=" in token


def _terminate_app_backends(pg: Any) -> int:
    import psycopg

    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE usename = 'slotguard_app' AND application_name = 'slotguard'"
            " AND datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_booking_on_a_connection_the_server_dropped_is_retried_transparently(
    pg: Any, api: ApiClient
) -> None:
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2032-02-01T10:00:00Z", "duration_minutes": 30}
    # Given a container whose connection is open and idle
    assert api.post("/appointments", json_body=body).status == 201
    # When the server side goes away while it idles (RDS Proxy's idle client timeout, a failover,
    # an administrator's pg_terminate_backend)
    assert _terminate_app_backends(pg) >= 1
    # Then the next booking, without an Idempotency-Key, is made: the dead connection is noticed
    # before the statement is sent, and the statement goes out on a fresh one
    again = api.post("/appointments", json_body={**body, "scheduled_at": "2032-02-01T12:00:00Z"})
    assert again.status == 201, again.body
    assert len(api.get("/appointments", query={"from": "2032-02-01T00:00:00Z"}).body["items"]) == 2


def test_a_connection_idle_past_the_bound_is_replaced_before_reuse(
    pg: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    now = [1000.0]
    db = Database(DatabaseSettings(database_url=pg.app_url, db_max_idle_s=60), clock=lambda: now[0])
    try:
        first = db.scalar("SELECT pg_backend_pid()", ())
        # Given a connection used within the bound is reused
        now[0] += 59
        assert db.scalar("SELECT pg_backend_pid()", ()) == first
        # When it then idles past the bound (below the proxy's 30 min idle client timeout)
        now[0] += 61
        # Then it is replaced before the next statement
        assert db.scalar("SELECT pg_backend_pid()", ()) != first
    finally:
        db.close()
    # And the log says why, with how long it idled
    [note] = log_records(caplog, "replacing a connection idle past the bound")
    assert (note.levelname, note.idle_s) == ("INFO", 61.0)


def test_a_connection_whose_socket_is_gone_is_replaced_before_the_statement(
    pg: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    caplog.set_level(logging.INFO)
    # Given a container's open connection whose socket was closed under the driver (it cannot even
    # be polled: the driver would fail the statement with an OSError, not a database error)
    db = Database(DatabaseSettings(database_url=pg.app_url))
    try:
        first = db.scalar("SELECT pg_backend_pid()", ())
        os.close(db._conn.fileno())  # type: ignore[union-attr]
        # When the next statement (not marked retry-safe) runs
        again = db.scalar("SELECT pg_backend_pid()", ())
        # Then it ran on a fresh connection, opened before the statement was sent (not a retry)
        assert again != first
        assert log_records(caplog, "the server closed the idle connection: reconnecting before the statement")
    finally:
        db.close()


def test_connections_speak_only_what_rds_proxy_speaks(pg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an environment asking libpq for what RDS Proxy refuses (direct SSL negotiation, and a
    # protocol newer than 3.0), which the next libpq could also make its default
    monkeypatch.setenv("PGSSLNEGOTIATION", "direct")
    monkeypatch.setenv("PGMAXPROTOCOLVERSION", "latest")
    db = Database(DatabaseSettings(database_url=pg.app_url))
    try:
        # When a container connects
        conn = db._connection()
        # Then it negotiates TLS the classic way and speaks protocol 3.0, as the proxy requires
        assert conn.pgconn.full_protocol_version == 30000
        assert conn.info.get_parameters().get("sslnegotiation", "postgres") == "postgres"
        assert db.scalar("SELECT 1", ()) == 1
    finally:
        db.close()
    # and a libpq too old to know the options is not given them (it would refuse the connection)
    assert proxy_protocol_options(160004) == {}
    assert proxy_protocol_options(170002) == {"sslnegotiation": "postgres"}


@pytest.mark.parametrize("session_token", [None, "IQoJb3JpZ2luX2VjEJr//////////wEaCWV1LXdlc3QtMSJH+/=="])
def test_the_local_signer_makes_the_token_botocore_makes(
    session_token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import datetime
    from urllib.parse import parse_qs

    import boto3

    from slotguard.aws.rds import presign_connect

    # Given Lambda-style credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    if session_token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", session_token)
    else:
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    host = "slotguard-dev-proxy.proxy-abc.eu-west-1.rds.amazonaws.com"
    reference = (
        boto3.Session()
        .client("rds", region_name="eu-west-1")
        .generate_db_auth_token(DBHostname=host, Port=5432, DBUsername="slotguard_app", Region="eu-west-1")
    )
    signed_at = datetime.strptime(parse_qs(reference.split("?", 1)[1])["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
    # When the standard-library signer signs the same request at the same second
    ours = presign_connect(
        host,
        5432,
        "slotguard_app",
        "eu-west-1",
        access_key="ASIAEXAMPLEKEY",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        session_token=session_token,
        now=signed_at.replace(tzinfo=UTC),
    )
    # Then the tokens carry the same parameters and the same signature
    assert ours.split("?")[0] == reference.split("?")[0]
    assert parse_qs(ours.split("?", 1)[1]) == parse_qs(reference.split("?", 1)[1])


def test_a_connection_lost_at_commit_is_database_unavailable_and_the_next_call_reconnects(pg: Any) -> None:
    import psycopg

    from slotguard.errors import DatabaseUnavailable

    # Given a transaction that has run a statement on the application's connection
    db = Database(DatabaseSettings(database_url=pg.app_url))
    pids = []

    def a_transaction_whose_session_ends_before_its_commit() -> None:
        with db.transaction():
            pids.append(db.scalar("SELECT pg_backend_pid()", ()))
            # When the server ends that session before the commit (a failover, a proxy restart)
            with psycopg.connect(pg.admin_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pids[0],))

    # Then the commit's failure is "unavailable" (503, retry)
    with pytest.raises(DatabaseUnavailable):
        a_transaction_whose_session_ends_before_its_commit()
    # And the connection is dropped: the next call opens a new one and answers
    assert db.scalar("SELECT pg_backend_pid()", ()) != pids[0]
