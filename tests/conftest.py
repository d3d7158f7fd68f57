"""Shared fixtures: a real PostgreSQL (embedded, or DATABASE_URL), migrated, reached as the
non-superuser application role; handlers loaded from their function folders; real
API Gateway HTTP API events."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from psycopg import sql

from slotguard.db.migrate import ensure_app_login, migrate
from slotguard_local.events import LambdaContext, http_api_event
from slotguard_local.functions import load_function

ROOT = Path(__file__).resolve().parents[1]
APP_PASSWORD = "app-" + uuid.uuid4().hex


@dataclass
class PgInstance:
    admin_url: str  # superuser on the test database (migrations, test setup only)
    app_url: str  # slotguard_app: not superuser, not owner -> RLS applies
    stop: Any = None
    start: Any = None
    log_file: Path | None = None  # the embedded server's log (None for an external DATABASE_URL)


def _with_db(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgInstance]:
    server = None
    if os.environ.get("DATABASE_URL"):
        root_url = os.environ["DATABASE_URL"]
    else:
        from slotguard_local.postgres import EmbeddedPostgres

        server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", durable=False).start()
        root_url = server.admin_url
    dbname = f"slotguard_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(root_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    admin_url = _with_db(root_url, dbname)
    migrate(admin_url)
    ensure_app_login(admin_url, password=APP_PASSWORD)
    app_url = psycopg.conninfo.make_conninfo(admin_url, user="slotguard_app", password=APP_PASSWORD)
    instance = PgInstance(admin_url=admin_url, app_url=app_url)
    if server is not None:
        instance.stop, instance.start = server.stop, server.start
        instance.log_file = server.data_dir / "server.log"
    os.environ["DATABASE_URL"] = app_url
    yield instance
    if server is not None:
        server.stop(mode="immediate")
    else:
        with psycopg.connect(root_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def scratch_database(pg: PgInstance) -> Iterator[str]:
    """An empty database of its own on the test server (its admin URL), dropped afterwards."""
    name = f"slotguard_scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield psycopg.conninfo.make_conninfo(pg.admin_url, dbname=name)
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_db(pg: PgInstance) -> Iterator[str]:
    yield from scratch_database(pg)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port bound by nobody's server: a connection to it is refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def admin_conn(pg: PgInstance) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def app_conn(pg: PgInstance) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg.app_url, autocommit=True) as conn:
        yield conn


@dataclass
class HttpResult:
    status: int
    body: Any
    headers: dict[str, str]


class ApiClient:
    """Sends real payload-2.0 events to a function's lambda_handler, as a given caller."""

    def __init__(self, module: ModuleType, claims: dict[str, Any] | None) -> None:
        self.module = module
        self.claims = claims

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        raw_body: bytes | str | None = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        body: bytes | str | None = (
            raw_body if raw_body is not None else (json.dumps(json_body) if json_body is not None else None)
        )
        hdrs = {"content-type": "application/json", **(headers or {})}
        event = http_api_event(
            method,
            path,
            query={k: str(v) for k, v in (query or {}).items()},
            headers=hdrs,
            body=body,
            claims=self.claims,
        )
        out = self.module.lambda_handler(event, LambdaContext())
        text = out.get("body") or ""
        return HttpResult(out["statusCode"], json.loads(text) if text else None, out.get("headers", {}))

    def get(self, path: str, **kw: Any) -> HttpResult:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> HttpResult:
        return self.request("POST", path, **kw)


@dataclass
class Org:
    org_id: str
    member: dict[str, Any]
    admin: dict[str, Any]


def new_org() -> Org:
    org_id = str(uuid.uuid4())
    return Org(
        org_id,
        {"sub": f"user-{uuid.uuid4().hex[:6]}", "org_id": org_id},
        {"sub": f"admin-{uuid.uuid4().hex[:6]}", "org_id": org_id, "role": "admin"},
    )


@pytest.fixture
def booking_fn(pg: PgInstance) -> ModuleType:
    return load_function("booking", fresh=False)


@pytest.fixture
def org() -> Org:
    return new_org()


@pytest.fixture
def api(booking_fn: ModuleType, org: Org) -> ApiClient:
    return ApiClient(booking_fn, org.member)


# ---------------------------------------------------------------------------------------
# AWS through moto's server mode (the same wire protocol as AWS), and the webhook pipeline
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto in server mode, in its own process (its own core and GIL, like a real endpoint).
    SLOTGUARD_TEST_MOTO_URL: one already running, shared by many sessions (make mutation runs a
    session per mutant; every test names its queues and secrets afresh)."""
    from slotguard_local.moto import MotoServer

    server = None
    endpoint = os.environ.get("SLOTGUARD_TEST_MOTO_URL", "")
    if not endpoint:
        server = MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log").start()
        endpoint = server.endpoint
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    yield endpoint
    if server is not None:
        server.stop()


@dataclass
class Queues:
    main_url: str
    dlq_url: str

    def depth(self, sqs: Any, url: str | None = None) -> int:
        attrs = sqs.get_queue_attributes(
            QueueUrl=url or self.main_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def make_queues(sqs: Any, *, max_receive_count: int, visibility_timeout_s: int) -> Queues:
    name = f"webhooks-{uuid.uuid4().hex[:10]}"
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq", Attributes={"VisibilityTimeout": str(visibility_timeout_s)}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    main_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout_s),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            ),
        },
    )["QueueUrl"]
    return Queues(main_url, dlq_url)


def create_moto_function(name: str) -> None:
    """A Lambda function in moto's Lambda API (a role it can assume, a handler that does nothing):
    what an event source mapping or a concurrency reservation is attached to."""
    from slotguard_local.lambda_api import create_function

    create_function(name)


def signed_headers(secret: str, webhook_id: str, body: str, at: Any = None) -> dict[str, str]:
    """Sign with the Standard Webhooks reference implementation."""
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    when = at or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, when, body),
    }


@pytest.fixture
def pipeline(pg: PgInstance, aws: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    import boto3

    from tests.webhook_support import MAX_ATTEMPTS, Pipeline

    sqs = boto3.client("sqs")
    queues = make_queues(sqs, max_receive_count=MAX_ATTEMPTS, visibility_timeout_s=2)
    prefix = f"test-{uuid.uuid4().hex[:8]}/webhooks/"
    for key, value in {
        "WEBHOOK_QUEUE_URL": queues.main_url,
        "WEBHOOK_DLQ_URL": queues.dlq_url,
        "WORKER_STATE_SOURCE": f"file:{tmp_path / 'worker-state.json'}",
        "WEBHOOK_SECRET_PREFIX": prefix,
        "WEBHOOK_SECRET_CACHE_S": "0",
        "WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "WEBHOOK_BACKOFF_BASE_S": "1",
        "WEBHOOK_BACKOFF_CAP_S": "2",
        "WEBHOOK_CLAIM_STALE_AFTER_S": "2",
        "BOOKING_LOCK_WAIT_MS": "2000",
    }.items():
        monkeypatch.setenv(key, value)
    return Pipeline(
        sqs=sqs,
        queues=queues,
        secret_prefix=prefix,
        admin_url=pg.admin_url,
        state_file=tmp_path / "worker-state.json",
    )


# ---------------------------------------------------------------------------------------
# The CDK app, synthesized once per session (dev and prod) for every template assertion
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cdk_app() -> Any:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    from infra.app import build_app
    from tests.test_infra import CONTEXT

    app = build_app({**CONTEXT, "stages": "dev,prod"}, outdir=str(ROOT / "cdk.out"))
    app.synth()  # raises when cdk-nag reports an unacknowledged finding
    return app


@pytest.fixture(scope="session")
def templates(cdk_app: Any) -> dict[str, Any]:
    """Each stage's stack (dev, prod)."""
    from aws_cdk.assertions import Template

    return {
        stage: Template.from_stack(cdk_app.node.find_child(f"Slotguard-{stage}"))  # type: ignore[arg-type]
        for stage in ("dev", "prod")
    }


@pytest.fixture(scope="session")
def edge_templates(cdk_app: Any) -> dict[str, Any]:
    """Each stage's webhook edge stack (its web ACL, in us-east-1)."""
    from aws_cdk.assertions import Template

    return {
        stage: Template.from_stack(cdk_app.node.find_child(f"Slotguard-{stage}-edge"))  # type: ignore[arg-type]
        for stage in ("dev", "prod")
    }


@pytest.fixture(scope="session")
def template(templates: dict[str, Any]) -> Any:
    return templates["dev"]


def log_records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    """The captured log records with exactly this message (picked by message, not by level: another
    test's background thread may log at the same level meanwhile)."""
    return [r for r in caplog.records if r.getMessage() == message]
