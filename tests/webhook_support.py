"""The webhook pipeline assembled for tests: receiver, processor containers, the SQS event
source emulation on a queue with a real redrive policy, the DLQ reconciler."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg

from slotguard.aws.secrets import WebhookSecretStore
from slotguard_local.events import LambdaContext, http_api_event
from slotguard_local.functions import load_function
from slotguard_local.poller import SqsEventSource
from tests.conftest import Queues, signed_headers

MAX_ATTEMPTS = 3


def book_data(start: str = "2030-06-01T10:00:00Z", minutes: int = 30) -> dict[str, Any]:
    """A booking webhook's (or request's) data: a new contact at `start` for `minutes`."""
    return {"contact_id": str(uuid.uuid4()), "scheduled_at": start, "duration_minutes": minutes}


@dataclass
class Pipeline:
    sqs: Any
    queues: Queues
    secret_prefix: str
    admin_url: str
    state_file: Path | None = None
    customize: list[Callable[[Any], None]] = field(default_factory=list)
    receiver: Any = None

    def __post_init__(self) -> None:
        self.receiver = load_function("webhook_receiver")
        self.store = WebhookSecretStore(self.secret_prefix, max_age_s=0, sm=boto3.client("secretsmanager"))

    # -- the org's secret and signed posts ----------------------------------------------------
    def new_org(self) -> tuple[str, str]:
        org_id = str(uuid.uuid4())
        return org_id, self.store.rotate(org_id)

    def post(self, org_id: str, body: str | bytes, headers: dict[str, str]) -> tuple[int, Any]:
        event = http_api_event(
            "POST",
            f"/webhooks/{org_id}",
            route_key="POST /webhooks/{org_id}",
            path_parameters={"org_id": org_id},
            headers=headers,
            body=body,
        )
        out = self.receiver.lambda_handler(event, LambdaContext(function_name="webhook_receiver"))
        return out["statusCode"], json.loads(out["body"]) if out.get("body") else None

    def send(
        self, org_id: str, secret: str, event_type: str, data: Any, webhook_id: str | None = None
    ) -> str:
        webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
        body = json.dumps({"type": event_type, "timestamp": "2030-01-01T00:00:00Z", "data": data})
        status, answer = self.post(org_id, body, signed_headers(secret, webhook_id, body))
        assert status == 202, answer
        return webhook_id

    # -- processing -------------------------------------------------------------------------
    def processor_container(self) -> Callable[[dict[str, Any], Any], Any]:
        module = load_function("webhook_processor")
        for customize in self.customize:
            customize(module.service)
        handler: Callable[[dict[str, Any], Any], Any] = module.lambda_handler
        return handler

    def event_source(self, **kw: Any) -> SqsEventSource:
        kw.setdefault("function_timeout_s", 10)
        return SqsEventSource(
            self.sqs,
            self.queues.main_url,
            self.processor_container,
            function_name="webhook_processor",
            state_file=self.state_file,
            **kw,
        )

    def dlq_source(self) -> SqsEventSource:
        return SqsEventSource(
            self.sqs,
            self.queues.dlq_url,
            lambda: load_function("dlq_reconciler").lambda_handler,
            function_name="dlq_reconciler",
            function_timeout_s=10,
        )

    def drain(
        self,
        source: SqsEventSource,
        until: Callable[[], bool],
        timeout_s: float = 30,
        describe: Callable[[], object] | None = None,
    ) -> None:
        """Poll `source` until `until()`; on the deadline, fail naming what the source saw last
        (its stats and last invocation result) and what `describe()` says of the state."""
        container = [source._new_container()]
        deadline = time.monotonic() + timeout_s
        while not until():
            if time.monotonic() >= deadline:
                state = describe() if describe is not None else None
                raise AssertionError(
                    f"the pipeline did not settle in {timeout_s} s: {source.function_name} "
                    f"{source.stats}, last result {source.last_result!r}; {state!r}"
                )
            source.poll_once(container, wait_time_s=0)
            time.sleep(0.05)

    def activity(self) -> list[dict[str, Any]]:
        """The app role's sessions: state, what each waits on, its open transaction's age."""
        with psycopg.connect(self.admin_url, row_factory=psycopg.rows.dict_row) as conn:
            return conn.execute(
                "SELECT pid, state, wait_event_type, wait_event, left(query, 120) AS query,"
                " now() - xact_start AS xact_age, pg_blocking_pids(pid) AS blocked_by"
                " FROM pg_stat_activity WHERE usename = 'slotguard_app'"
            ).fetchall()

    # -- what the database holds --------------------------------------------------------------
    def rows(self, org_id: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.admin_url, row_factory=psycopg.rows.dict_row) as conn:
            return conn.execute(
                "SELECT * FROM slotguard.webhook_delivery_log WHERE org_id = %s ORDER BY id", (org_id,)
            ).fetchall()

    def appointments(self, org_id: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.admin_url, row_factory=psycopg.rows.dict_row) as conn:
            return conn.execute(
                "SELECT * FROM slotguard.appointments WHERE org_id = %s ORDER BY scheduled_at", (org_id,)
            ).fetchall()
