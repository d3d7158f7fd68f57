"""The whole system on one machine: embedded PostgreSQL (or DATABASE_URL), moto's server (or
LocalStack's with SLOTGUARD_AWS=localstack, or AWS_ENDPOINT_URL), the HTTP front door, the SQS event
source emulation for the processor and the dead-letter reconciler, and the retention cleanup on a
timer. Every function runs in its own container processes (slotguard_local.containers), as in
Lambda; this process never imports a handler."""

from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import jwt
import psycopg
from psycopg import sql

from slotguard.aws.secrets import new_webhook_secret
from slotguard.db.migrate import ensure_app_login, run_migrations
from slotguard.topology import (
    API_TIMEOUT_S,
    CLEANUP_SCHEDULE_MINUTES,
    CLEANUP_TIMEOUT_S,
    ROUTES,
    WEBHOOK_QUEUE,
)
from slotguard_local import cdklocal
from slotguard_local.containers import ColdStarts, ContainerPool
from slotguard_local.emf import EmfToCloudWatch
from slotguard_local.files import write_private
from slotguard_local.frontdoor import FrontDoor, JwtAuthorizer, JwtSettings
from slotguard_local.functions import LOCAL_STAGE, ROOT, concurrency, function_environment, handler_path
from slotguard_local.lambda_api import register_queue_worker, worker_state_mode
from slotguard_local.localstack import MATCH as LOCALSTACK_MATCH
from slotguard_local.localstack import VERSION as LOCALSTACK_VERSION
from slotguard_local.localstack import LocalStackMissing, LocalStackServer, runtime_python
from slotguard_local.lock import StackAlreadyRunning, StateFolderLock
from slotguard_local.moto import MotoServer
from slotguard_local.poller import SqsEventSource
from slotguard_local.postgres import EmbeddedPostgres, free_port
from slotguard_local.watchdog import Watchdog

QUEUE_NAME = "slotguard-webhooks"
DLQ_NAME = "slotguard-webhooks-dlq"
SECRET_PREFIX = "slotguard/webhooks/"  # noqa: S105 - a name prefix, not a secret
ISSUER = "slotguard-local"
AUDIENCE = "slotguard"
TOKEN_LIFETIME_S = 30 * 24 * 3600
OPENAPI = ROOT / "docs" / "openapi.json"  # generated from the handlers; a test keeps it in sync


def _say(message: str) -> None:
    print(f"[slotguard] {message}", flush=True)


def aws_emulator() -> str:
    """SLOTGUARD_AWS (make local AWS=...): moto (the default) or localstack."""
    value = os.environ.get("SLOTGUARD_AWS", "").strip().lower() or "moto"
    if value not in ("moto", "localstack"):
        raise StartRefused(f"SLOTGUARD_AWS (make local AWS=...) must be moto or localstack, not {value!r}")
    return value


def deploy_cdk_stage() -> bool:
    """SLOTGUARD_LOCALSTACK_CDK=1 (make local AWS=localstack CDK=1): deploy the CDK stage first."""
    return os.environ.get("SLOTGUARD_LOCALSTACK_CDK", "").strip().lower() in ("1", "true", "yes")


def max_containers() -> int | None:
    """SLOTGUARD_MAX_CONTAINERS: at most this many containers per function (unset: each function's
    own concurrency, as deployed)."""
    value = os.environ.get("SLOTGUARD_MAX_CONTAINERS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise StartRefused(f"SLOTGUARD_MAX_CONTAINERS must be a positive integer, not {value!r}")
    return int(value)


class StartRefused(RuntimeError):
    """The stack will not start, for a reason the message explains; nothing was started."""


def console_link(api_url: str, token: str) -> str:
    """The operations console with a token in the URL fragment: the browser never sends a
    fragment, and the page moves it to sessionStorage and clears it from the address bar."""
    return f"{api_url}/console#token={token}"


def check_port_free(host: str, port: int) -> None:
    """Bind the front door's address the way its server will (SO_REUSEADDR), then let it go."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StartRefused(
                f"port {port} on {host} is already in use ({exc.strerror}). Stop what listens there, "
                f"or choose another port: SLOTGUARD_PORT={port + 1} make local"
            ) from None


@dataclass
class LocalStack:
    home: Path
    port: int = 3000
    host: str = "127.0.0.1"
    cleanup_every_s: float = CLEANUP_SCHEDULE_MINUTES * 60
    _pg: EmbeddedPostgres | None = None
    # The AWS emulator this stack started (moto's server, or LocalStack's), None for AWS_ENDPOINT_URL
    _moto: MotoServer | LocalStackServer | None = None
    _door: FrontDoor | None = None
    _lock: StateFolderLock | None = None
    _watchdog: Watchdog | None = None
    _sources: list[SqsEventSource] = field(default_factory=list)
    _secret_prefix: str = SECRET_PREFIX
    _queue_urls: dict[str, str] = field(default_factory=dict)  # main, dlq
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    # What the functions' configs read (each container gets its own function's share)
    _settings: dict[str, str] = field(default_factory=dict)
    _pools: dict[str, ContainerPool] = field(default_factory=dict)
    _cold_starts: ColdStarts = field(default_factory=ColdStarts)
    _max_containers: int | None = None
    _worker_state_mode: str = "file"

    # -- persistent dev state ---------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        path = self.home / "dev-state.json"
        if path.exists():
            state: dict[str, Any] = json.loads(path.read_text())
            return state
        state = {
            "jwt_secret": secrets.token_urlsafe(32),
            "app_password": secrets.token_urlsafe(24),
            "orgs": [{"org_id": str(uuid.uuid4()), "webhook_secret": new_webhook_secret()} for _ in range(2)],
        }
        write_private(path, json.dumps(state, indent=2))
        return state

    # -- start ------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        """Start everything; StartRefused (before anything started) when it must not run."""
        started = time.monotonic()
        emulator = aws_emulator()
        self._max_containers = max_containers()
        try:
            self._worker_state_mode = worker_state_mode()
        except ValueError as exc:
            raise StartRefused(str(exc)) from None
        if self._worker_state_mode == "lambda" and (emulator != "moto" or os.environ.get("AWS_ENDPOINT_URL")):
            raise StartRefused(
                "SLOTGUARD_WORKER_STATE=lambda needs the stack's own moto (make local or make local"
                " AWS=moto, without AWS_ENDPOINT_URL): only it is patched not to run the mapping itself;"
                " LocalStack's would poll the queue, another moto would take the messages on every send"
            )
        if emulator == "localstack" and not os.environ.get("AWS_ENDPOINT_URL"):
            try:
                runtime_python()
            except LocalStackMissing as exc:
                raise StartRefused(str(exc)) from None
            if deploy_cdk_stage() and not cdklocal.CDKLOCAL.exists():
                raise StartRefused(
                    f"{cdklocal.CDKLOCAL} is missing: `make local AWS=localstack CDK=1` installs it"
                )
        self.home.mkdir(parents=True, exist_ok=True)
        lock = StateFolderLock(self.home)
        try:
            lock.acquire(self.port, self.host)
        except StackAlreadyRunning as exc:
            raise StartRefused(str(exc)) from None
        self._lock = lock
        check_port_free(self.host, self.port)
        assert lock.fd is not None
        self._watchdog = Watchdog(keep_fds=(lock.fd,)).start()
        state = self._state()
        admin_url, app_url = self._database(state["app_password"])
        fresh_queues = self._aws()
        sqs = boto3.client("sqs")
        deployed = self._deploy_cdk_stage()
        if deployed:  # the queues the CDK constructs made, from the stack's outputs
            queue_url, dlq_url = deployed["WebhookQueueUrl"], deployed["WebhookDeadLetterQueueUrl"]
            self._secret_prefix = deployed["WebhookSecretPrefix"]
        else:
            queue_url, dlq_url = self._queues(sqs)
        self._queue_urls = {"main": queue_url, "dlq": dlq_url}
        self._secrets(state["orgs"])
        worker_state = self._worker_state(queue_url)
        self._settings.update(
            {
                "DATABASE_URL": app_url,
                "WEBHOOK_QUEUE_URL": queue_url,
                "WEBHOOK_DLQ_URL": dlq_url,
                "WEBHOOK_SECRET_PREFIX": self._secret_prefix,
                "WEBHOOK_MAX_ATTEMPTS": str(WEBHOOK_QUEUE.max_attempts),
                "WEBHOOK_BACKOFF_BASE_S": os.environ.get("WEBHOOK_BACKOFF_BASE_S", "2"),
                "WEBHOOK_BACKOFF_CAP_S": os.environ.get("WEBHOOK_BACKOFF_CAP_S", "60"),
                "WEBHOOK_CLAIM_STALE_AFTER_S": str(WEBHOOK_QUEUE.claim_stale_after_s),
                "WORKER_STATE_SOURCE": worker_state,
            }
        )
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        self._start_pools()
        if fresh_queues:
            self._restore_queued(sqs, queue_url, dlq_url, admin_url)
        self._start_workers(sqs, queue_url, dlq_url)
        self._start_front_door(state["jwt_secret"])
        self._start_cleanup()
        self._start_metrics_forwarding()
        self._write_stack_json(state)
        _say(f"ready in {time.monotonic() - started:.1f}s")
        return self

    def _worker_state(self, queue_url: str) -> str:
        """Where queue-health reads the webhook worker's state (WORKER_STATE_SOURCE): the local
        poller's state file, or (SLOTGUARD_WORKER_STATE=lambda) the processor's event source
        mapping in moto's Lambda API, as deployed (slotguard_local.lambda_api)."""
        if self._worker_state_mode == "file":
            return f"file:{self.home / 'worker-state.json'}"
        mapping = register_queue_worker(
            f"slotguard-{LOCAL_STAGE}-webhook-processor",
            handler_path("webhook_processor"),
            queue_url,
            batch_size=WEBHOOK_QUEUE.batch_size,
            batching_window_s=WEBHOOK_QUEUE.batching_window_s,
            maximum_concurrency=WEBHOOK_QUEUE.maximum_concurrency,
        )
        _say(f"worker state: the processor's event source mapping {mapping} in moto's Lambda API")
        return f"lambda:{mapping}"

    def _database(self, app_password: str) -> tuple[str, str]:
        if os.environ.get("DATABASE_URL"):
            admin_url = os.environ["DATABASE_URL"]
            _say("database: DATABASE_URL")
        else:
            self._pg = EmbeddedPostgres(self.home / "pg", port=self._other_free_port(), durable=True)
            if self._watchdog is not None:
                self._watchdog.watch_postgres(self._pg.data_dir)
            self._pg.start()
            root = self._pg.admin_url
            with psycopg.connect(root, autocommit=True) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'slotguard'").fetchone():
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("slotguard")))
            admin_url = psycopg.conninfo.make_conninfo(root, dbname="slotguard")
            _say(f"database: embedded PostgreSQL on 127.0.0.1:{self._pg.port}, data in {self.home / 'pg'}")
        run = run_migrations(admin_url)
        if run.versions or run.functions:
            _say(f"migrations: {len(run.versions)} applied, {len(run.functions)} function files applied")
        else:
            _say("migrations: up to date")
        ensure_app_login(admin_url, password=app_password)
        return admin_url, psycopg.conninfo.make_conninfo(
            admin_url, user="slotguard_app", password=app_password
        )

    def _aws(self) -> bool:
        """True when the emulator is ours (in memory, so queues start empty)."""
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
        if os.environ.get("AWS_ENDPOINT_URL"):
            _say(f"AWS: {os.environ['AWS_ENDPOINT_URL']}")
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
            return False
        if aws_emulator() == "localstack":
            server: MotoServer | LocalStackServer = LocalStackServer(
                home=self.home / "localstack",
                port=self._other_free_port(),
                log_path=self.home / "localstack.log",
            )
            name, match = "localstack", LOCALSTACK_MATCH
        else:
            server = MotoServer(port=self._other_free_port(), log_path=self.home / "moto.log")
            name, match = "moto", "moto.server"
        self._moto = server
        # The watchdog hears of the child as soon as it exists, before it is ready
        server.start(on_spawn=functools.partial(self._child_started, name, match))
        os.environ.update(
            AWS_ENDPOINT_URL=server.endpoint,
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",  # noqa: S106 - the emulator takes any key
        )
        if isinstance(server, LocalStackServer):
            _say(
                f"AWS: LocalStack {LOCALSTACK_VERSION} (open-source runtime, no Docker) on {server.endpoint}"
                f" (SQS, Secrets Manager, CloudWatch), files in {server.home}"
            )
        else:
            _say(f"AWS: moto server on {server.endpoint} (SQS, Secrets Manager, CloudWatch)")
        return True

    def _deploy_cdk_stage(self) -> dict[str, str] | None:
        """With CDK=1 (SLOTGUARD_LOCALSTACK_CDK=1): `cdklocal deploy` the CDK app's LocalStack stage
        into our LocalStack, and return its outputs."""
        if not deploy_cdk_stage() or not isinstance(self._moto, LocalStackServer):
            return None
        started = time.monotonic()
        outputs = cdklocal.deploy(
            self._moto.endpoint,
            os.environ["AWS_REGION"],
            workdir=self.home / "cdklocal",
            log_path=self.home / "cdklocal.log",
        )
        _say(
            f"CDK: stack {cdklocal.STACK_NAME} (webhook queues, alarms, dashboard, cleanup rule) deployed"
            f" with cdklocal in {time.monotonic() - started:.1f}s; queues from its outputs:"
            f" {outputs['WebhookQueueUrl']}, {outputs['WebhookDeadLetterQueueUrl']}"
        )
        return outputs

    def _other_free_port(self) -> int:
        """A free loopback port that is not the front door's (not bound yet: the kernel may offer it)."""
        while True:
            port = free_port()
            if port != self.port:
                return port

    def _child_started(self, name: str, match: str, pid: int) -> None:
        if self._watchdog is not None:
            self._watchdog.watch_process(pid)
        if self._lock is not None:
            self._lock.record_child(name, pid, match)

    def _queues(self, sqs: Any) -> tuple[str, str]:
        def ensure(name: str, attributes: dict[str, str]) -> str:
            try:
                url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
                return url
            except sqs.exceptions.QueueDoesNotExist:
                created: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
                return created

        retention = str(WEBHOOK_QUEUE.retention_days * 24 * 3600)
        dlq_retention = str(WEBHOOK_QUEUE.dlq_retention_days * 24 * 3600)
        dlq_url = ensure(DLQ_NAME, {"MessageRetentionPeriod": dlq_retention, "VisibilityTimeout": "30"})
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        queue_url = ensure(
            QUEUE_NAME,
            {
                "MessageRetentionPeriod": retention,
                "VisibilityTimeout": str(WEBHOOK_QUEUE.visibility_timeout_s),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(WEBHOOK_QUEUE.max_receive_count)}
                ),
            },
        )
        return queue_url, dlq_url

    def _secrets(self, orgs: list[dict[str, str]]) -> None:
        sm = boto3.client("secretsmanager")
        for org in orgs:
            name = f"{self._secret_prefix}{org['org_id']}"
            value = json.dumps({"secrets": [org["webhook_secret"]]})
            try:
                current = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
                if org["webhook_secret"] not in current.get("secrets", []):
                    sm.put_secret_value(SecretId=name, SecretString=value)
            except sm.exceptions.ResourceNotFoundException:
                sm.create_secret(Name=name, SecretString=value)

    def _restore_queued(self, sqs: Any, queue_url: str, dlq_url: str, admin_url: str) -> None:
        """The emulator keeps queues in memory: put back what the last run left queued."""
        saved = self.home / "queued-messages.json"
        restored = 0
        if saved.exists():
            for entry in json.loads(saved.read_text()):
                url = dlq_url if entry["queue"] == "dlq" else queue_url
                sqs.send_message(
                    QueueUrl=url, MessageBody=entry["body"], MessageAttributes=entry["attributes"]
                )
                restored += 1
            saved.unlink()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            row = conn.execute("SELECT slotguard.unfinished_webhook_deliveries()").fetchone()
        for item in row[0] if row else []:
            attributes = {
                k: {"DataType": "String", "StringValue": v}
                for k, v in {
                    "org_id": item["org_id"],
                    "webhook_id": item["job_id"],
                    "event_type": item["event_type"],
                }.items()
            }
            sqs.send_message(
                QueueUrl=queue_url, MessageBody=json.dumps(item["event_data"]), MessageAttributes=attributes
            )
            restored += 1
        if restored:
            _say(f"re-enqueued {restored} webhook(s) left unfinished by the previous run")

    def _start_pools(self) -> None:
        """One pool of containers per function, each container with its function's environment
        (checked against its typed config here); no container starts before it is needed."""
        timeouts = {
            "webhook_processor": WEBHOOK_QUEUE.processor_timeout_s,
            "dlq_reconciler": WEBHOOK_QUEUE.reconciler_timeout_s,
            "cleanup": CLEANUP_TIMEOUT_S,
        }
        sizes = {
            "webhook_processor": WEBHOOK_QUEUE.maximum_concurrency,
            "dlq_reconciler": WEBHOOK_QUEUE.reconciler_maximum_concurrency,
        }
        cap = self._max_containers
        names = sorted({r.function for r in ROUTES} | set(timeouts))
        for name in names:
            self._pools[name] = ContainerPool(
                name,
                handler_path(name),
                function_environment(name, self._settings, os.environ, self.home / "metrics.jsonl"),
                concurrency=min(sizes[name], cap or sizes[name]) if name in sizes else concurrency(name, cap),
                timeout_s=timeouts.get(name, API_TIMEOUT_S),
                cold_starts=self._cold_starts,
            )
        _say(
            "functions: "
            + ", ".join(f"{name} x{pool.concurrency}" for name, pool in self._pools.items())
            + " (containers are processes, started on demand;"
            f" {self._cold_starts.at_once} cold starts at a time)"
        )

    def _start_workers(self, sqs: Any, queue_url: str, dlq_url: str) -> None:
        processor_pool, reconciler_pool = self._pools["webhook_processor"], self._pools["dlq_reconciler"]
        processor = SqsEventSource(
            sqs,
            queue_url,
            lambda: processor_pool,
            function_name="webhook_processor",
            batch_size=WEBHOOK_QUEUE.batch_size,
            batching_window_s=WEBHOOK_QUEUE.batching_window_s,
            max_concurrency=WEBHOOK_QUEUE.maximum_concurrency,
            function_timeout_s=WEBHOOK_QUEUE.processor_timeout_s,
            state_file=self.home / "worker-state.json",
        )
        reconciler = SqsEventSource(
            sqs,
            dlq_url,
            lambda: reconciler_pool,
            function_name="dlq_reconciler",
            batch_size=10,
            max_concurrency=WEBHOOK_QUEUE.reconciler_maximum_concurrency,
            function_timeout_s=WEBHOOK_QUEUE.reconciler_timeout_s,
        )
        for source in (processor, reconciler):
            source.start()
            self._sources.append(source)
        _say(
            f"pollers: webhook_processor (batch {WEBHOOK_QUEUE.batch_size}, window "
            f"{WEBHOOK_QUEUE.batching_window_s}s, concurrency {WEBHOOK_QUEUE.maximum_concurrency}),"
            " dlq_reconciler"
        )

    def _start_front_door(self, jwt_secret: str) -> None:
        # The committed document itself (its server "/" is wherever it is served from)
        self._door = FrontDoor(
            ROUTES,
            self._pools,
            JwtAuthorizer(JwtSettings(jwt_secret, ISSUER, AUDIENCE)),
            OPENAPI.read_bytes(),
            host=self.host,
            port=self.port,
        )
        self._door.start()

    def _start_metrics_forwarding(self) -> None:
        forwarder = EmfToCloudWatch(self.home / "metrics.jsonl", boto3.client("cloudwatch"), self._stop)
        threading.Thread(target=forwarder.run, name="emf-to-cloudwatch", daemon=True).start()

    def _start_cleanup(self) -> None:
        cleanup = self._pools["cleanup"]

        def run() -> None:
            while not self._stop.wait(self.cleanup_every_s):
                try:
                    report = cleanup.invoke({"source": "aws.events", "detail-type": "Scheduled Event"})
                    _say(f"cleanup: {report}")
                except Exception as exc:
                    _say(f"cleanup failed: {exc}")

        thread = threading.Thread(target=run, name="cleanup-timer", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _token(self, secret: str, org_id: str, sub: str, role: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": sub,
            "org_id": org_id,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
        }
        if role:
            claims["role"] = role
        return jwt.encode(claims, secret, algorithm="HS256")

    def _write_stack_json(self, state: dict[str, Any]) -> None:
        assert self._door is not None
        api_url = f"http://{self.host}:{self.port}"
        orgs = [
            {
                "org_id": org["org_id"],
                "token": self._token(state["jwt_secret"], org["org_id"], f"member-{i + 1}", None),
                "admin_token": self._token(state["jwt_secret"], org["org_id"], f"admin-{i + 1}", "admin"),
                "webhook_secret": org["webhook_secret"],
            }
            for i, org in enumerate(state["orgs"])
        ]
        path = self.home / "stack.json"
        contents = {
            "api_url": api_url,
            "aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"],
            "aws_region": os.environ["AWS_REGION"],
            "webhook_secret_prefix": self._secret_prefix,
            "orgs": orgs,
        }
        write_private(path, json.dumps(contents, indent=2))
        _say(f"API: {api_url}  (OpenAPI: {api_url}/openapi.json)")
        _say(f"orgs, tokens (valid {TOKEN_LIFETIME_S // 86400} days) and webhook secrets: {path}")
        _say(
            f"console: {console_link(api_url, orgs[0]['admin_token'])}  (the first org's admin;"
            " the token is in the fragment, never sent to a server)"
        )
        _say("try it: the walkthrough in README.md, section 'Try it', from the repository root")
        if self.home != ROOT / ".local":
            _say(f"        (in a shell with SLOTGUARD_HOME={self.home})")
        _say(f"metrics (EMF): {self.home / 'metrics.jsonl'}")
        _say("stop with Ctrl-C")

    # -- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        if self._door is not None:
            self._door.stop()
        for source in self._sources:  # every poller at once; each finishes the batch it has
            source.signal_stop()
        for source in self._sources:
            source.stop(timeout_s=3)
        # Every container at once: an idle one exits at its end of input, a busy one when it is done
        # (or is killed after 2 s)
        closing = [pool.begin_close() for pool in self._pools.values()]
        deadline = time.monotonic() + 2
        for containers in closing:
            ContainerPool.finish_close(containers, deadline)
        used = [(p.name, p.stats) for p in self._pools.values() if p.stats.cold_starts]
        if used:
            _say(
                "containers started: "
                + ", ".join(
                    f"{name} {s.cold_starts} (cold start {s.cold_start_ms / s.cold_starts:.0f} ms on average;"
                    f" {s.invocations} invocations)"
                    for name, s in used
                )
            )
        if self._moto is not None:
            # what the pollers received and did not delete is invisible in the queue for now:
            # made visible, it is saved with the rest (the emulator's queues live in memory)
            released = sum(source.release_unsettled() for source in self._sources)
            if released:
                _say(f"{released} message(s) received and not finished returned to their queue")
            self._save_queued()
            self._moto.stop()
        if self._pg is not None:
            self._pg.stop()
        if self._watchdog is not None:
            self._watchdog.done()
        if self._lock is not None:
            self._lock.release()
        _say("stopped")

    def _save_queued(self) -> None:
        """Keep what is still visibly queued in the in-memory emulator for the next start."""
        try:
            sqs = boto3.client("sqs")
            saved = []
            for label, url in self._queue_urls.items():
                while True:
                    got = sqs.receive_message(
                        QueueUrl=url,
                        MaxNumberOfMessages=10,
                        MessageAttributeNames=["All"],
                        WaitTimeSeconds=0,
                        VisibilityTimeout=60,
                    ).get("Messages", [])
                    if not got:
                        break
                    for m in got:
                        attrs = {
                            k: {"DataType": v["DataType"], "StringValue": v["StringValue"]}
                            for k, v in m.get("MessageAttributes", {}).items()
                        }
                        saved.append({"queue": label, "body": m["Body"], "attributes": attrs})
            if saved:
                write_private(self.home / "queued-messages.json", json.dumps(saved))
                _say(f"saved {len(saved)} queued message(s) for the next start")
        except Exception as exc:
            _say(f"could not save queued messages: {exc}")
