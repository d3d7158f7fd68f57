"""Webhook benchmarks: the processor on 10-record batches vs a bare batched INSERT of the same
log rows; the receiver per request vs a bare SendMessage to the same (moto) endpoint."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg

from bench.common import TABLE, BenchDb, Timing, bench_database, progress, time_each
from slotguard.aws.secrets import WebhookSecretStore
from slotguard_local.events import LambdaContext, http_api_event, sqs_record
from slotguard_local.functions import load_function
from slotguard_local.moto import MotoServer

BATCHES = int(os.environ.get("BENCH_BATCHES", "100"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "300"))
BASE = datetime(2036, 1, 1, tzinfo=UTC)
ARN = "arn:aws:sqs:us-east-1:000000000000:bench"


def _message(org: str, event_type: str, data: Any) -> dict[str, Any]:
    job = f"msg_{uuid.uuid4().hex}"
    return {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": uuid.uuid4().hex,
        "Body": json.dumps({"type": event_type, "timestamp": BASE.isoformat(), "data": data}),
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MessageAttributes": {
            k: {"DataType": "String", "StringValue": v}
            for k, v in {"org_id": org, "webhook_id": job, "event_type": event_type}.items()
        },
    }


def processor(db: BenchDb) -> None:
    os.environ["DATABASE_URL"] = db.app_url
    os.environ["WEBHOOK_QUEUE_URL"] = "http://unused.invalid/queue"  # successes never call SQS
    handler = load_function("webhook_processor").lambda_handler
    org = str(uuid.uuid4())
    slot = iter(range(10**9))

    def batch_of(event_type: str) -> dict[str, Any]:
        records = []
        for _ in range(10):
            data: Any = {"n": 1}
            if event_type == "appointment.book":
                data = {
                    "contact_id": str(uuid.uuid4()),
                    "duration_minutes": 10,
                    "scheduled_at": (BASE + timedelta(minutes=10 * next(slot))).isoformat(),
                }
            records.append(sqs_record(_message(org, event_type, data), ARN))
        return {"Records": records}

    def prepared(event_type: str) -> Callable[[int], None]:
        """Batches built ahead and five warm-up invocations; the returned op runs batch i."""
        events = [batch_of(event_type) for _ in range(BATCHES + 5)]

        def one(i: int) -> None:
            answer = handler(events[i], LambdaContext(function_name="webhook_processor"))
            assert answer == {"batchItemFailures": []}, answer

        for w in range(5):
            one(BATCHES + w)
        return one

    with psycopg.connect(db.admin_url, autocommit=True, prepare_threshold=None) as admin:

        def insert_batch(i: int) -> None:
            with admin.transaction():
                admin.cursor().executemany(
                    """INSERT INTO slotguard.webhook_delivery_log
                       (org_id, job_id, event_type, event_data, status, attempts, max_attempts, completed_at)
                       VALUES (%s, %s, 'invoice.paid', %s, 'completed', 1, 5, now())""",
                    [(org, f"raw_{i}_{k}_{uuid.uuid4().hex[:6]}", json.dumps({"n": 1})) for k in range(10)],
                )

        for w in range(5):
            insert_batch(-1 - w)
        raw = time_each("bare batched INSERT of 10 log rows", BATCHES, insert_batch)
    progress(f"webhook processor: {BATCHES} batches of 10 records per path")
    ignored_t = time_each("processor, 10 x unknown type (claim+complete)", BATCHES, prepared("invoice.paid"))
    book_t = time_each("processor, 10 x appointment.book", BATCHES, prepared("appointment.book"))
    base = f"bare batched INSERT {10 * raw.throughput:.0f} records/s"
    TABLE.add(
        f"webhook processor, {BATCHES} batches of 10 records, unknown type (claim + complete)",
        f"{10 * ignored_t.throughput:.0f} records/s",
        base,
        f"{ignored_t.throughput / raw.throughput:.2f}x",
        ">= 2,000/s and >= 0.5x",
    )
    TABLE.add(
        f"webhook processor, {BATCHES} batches of 10 x `appointment.book`",
        f"{10 * book_t.throughput:.0f} records/s",
        base,
        f"{book_t.throughput / raw.throughput:.2f}x",
        ">= 1,000/s",
    )


def receiver() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        moto = MotoServer(log_path=Path(tmp) / "moto.log").start()
        try:
            os.environ.update(
                AWS_ENDPOINT_URL=moto.endpoint,
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench",
                AWS_DEFAULT_REGION="us-east-1",
            )
            sqs = boto3.client("sqs")
            url = sqs.create_queue(QueueName="bench")["QueueUrl"]
            os.environ.update(WEBHOOK_QUEUE_URL=url, WEBHOOK_SECRET_PREFIX="bench/")
            org = str(uuid.uuid4())
            secret = WebhookSecretStore("bench/", sm=boto3.client("secretsmanager")).rotate(org)
            fn = load_function("webhook_receiver")
            from standardwebhooks.webhooks import Webhook

            signer = Webhook(secret)
            body = json.dumps({"type": "appointment.book", "timestamp": BASE.isoformat(), "data": {"x": 1}})
            attrs = {
                k: {"DataType": "String", "StringValue": v}
                for k, v in {"org_id": org, "webhook_id": "w", "event_type": "appointment.book"}.items()
            }

            def via_receiver(i: int) -> None:
                now = datetime.now(UTC)
                headers = {
                    "content-type": "application/json",
                    "webhook-id": f"w{i}",
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": signer.sign(f"w{i}", now, body),
                }
                out = fn.lambda_handler(
                    http_api_event("POST", f"/webhooks/{org}", headers=headers, body=body),
                    LambdaContext(function_name="webhook_receiver"),
                )
                assert out["statusCode"] == 202, out

            def bare_send(i: int) -> None:
                sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attrs)

            progress(f"webhook receiver: {REQUESTS} requests, interleaved with bare SendMessage")
            for w in range(10):
                via_receiver(10**6 + w)
                bare_send(w)
            # Interleaved, so both see the same queue length (moto slows down as a queue grows).
            samples: dict[str, list[float]] = {"full": [], "bare": []}
            started = time.perf_counter()
            for i in range(REQUESTS):
                for key, op in (("full", via_receiver), ("bare", bare_send)):
                    t = time.perf_counter()
                    op(i)
                    samples[key].append((time.perf_counter() - t) * 1000)
            wall = (time.perf_counter() - started) / 2
            full = Timing("receiver (verify + cached secret + send)", samples["full"], wall)
            bare = Timing("bare SendMessage (same attributes)", samples["bare"], wall)
            sqs.purge_queue(QueueUrl=url)
            TABLE.add(
                f"webhook receiver (verify + cached secret + SendMessage), {REQUESTS} requests, median",
                f"{full.median:.2f} ms",
                f"bare SendMessage to the same moto server {bare.median:.2f} ms",
                f"{full.median / bare.median:.2f}x",
                "",
            )
        finally:
            moto.stop()


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    t0 = time.perf_counter()
    with bench_database() as db:
        processor(db)
    receiver()
    progress(f"webhook benchmarks took {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
