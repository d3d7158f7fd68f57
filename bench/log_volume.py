"""Bytes logged per request: what a booking and a webhook put into CloudWatch Logs.

Each function runs in a process of its own (as in Lambda), metrics on and Powertools' log level as
the CDK app sets it; everything the process writes (its log lines, its EMF records) is counted, per
request. Added to that, what the function does not write itself but is billed all the same: the
Lambda runtime's START / END / REPORT lines (their sizes as Lambda prints them, with the X-Ray
segment on the REPORT line where tracing is active) and the HTTP API's access log line (its format
from infra/constructs/api.py, with typical values), each event with CloudWatch Logs' 26 bytes of
per-event overhead. A webhook is the receiver's request plus a tenth of a processor invocation
(batches of 10).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.common import TABLE, bench_database, progress

N = int(os.environ.get("BENCH_LOG_REQUESTS", "200"))  # requests per function (a tenth for batches)
EVENT_OVERHEAD = 26  # bytes CloudWatch Logs bills per event, on top of its message
REQUEST_ID = "3f1a2b4c-5d6e-7f80-91a2-b3c4d5e6f708"
START = f"START RequestId: {REQUEST_ID} Version: $LATEST"
END = f"END RequestId: {REQUEST_ID}"
REPORT = (
    f"REPORT RequestId: {REQUEST_ID}\tDuration: 23.45 ms\tBilled Duration: 24 ms\tMemory Size: 512 MB\t"
    "Max Memory Used: 98 MB\t"
)
XRAY = "\nXRAY TraceId: 1-6752f0a1-0a1b2c3d4e5f60718293a4b5\tSegmentId: 1a2b3c4d5e6f7081\tSampled: true\t"

# Runs in the function's own process: N invocations; stdout and stderr go to a file.
_RUN = """
import json, sys, uuid
from datetime import datetime, timedelta, UTC
from slotguard_local.events import LambdaContext, http_api_event, sqs_record
from slotguard_local.functions import load_function

name, n = sys.argv[1], int(sys.argv[2])
fn = load_function(name)
org = sys.argv[3]
when = datetime(2036, 1, 1, tzinfo=UTC)
for i in range(n):
    if name == "booking":
        at = (when + timedelta(minutes=30 * i)).isoformat()
        body = {"contact_id": str(uuid.uuid4()), "scheduled_at": at, "duration_minutes": 30}
        event = http_api_event("POST", "/appointments", headers={"content-type": "application/json"},
                               body=json.dumps(body), claims={"sub": "bench", "org_id": org})
        assert fn.lambda_handler(event, LambdaContext())["statusCode"] == 201
    elif name == "webhook_receiver":
        from standardwebhooks.webhooks import Webhook
        at = (when + timedelta(minutes=30 * i)).isoformat()
        data = {"contact_id": str(uuid.uuid4()), "scheduled_at": at, "duration_minutes": 30}
        body = json.dumps({"type": "appointment.book", "timestamp": "2036-01-01T00:00:00Z", "data": data})
        wid, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
        headers = {"content-type": "application/json", "webhook-id": wid,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(sys.argv[4]).sign(wid, now, body)}
        event = http_api_event("POST", f"/webhooks/{org}", route_key="POST /webhooks/{org_id}",
                               path_parameters={"org_id": org}, headers=headers, body=body)
        assert fn.lambda_handler(event, LambdaContext())["statusCode"] == 202
    else:  # webhook_processor: batches of 10 appointment.book records
        records = []
        for j in range(10):
            data = {"contact_id": str(uuid.uuid4()),
                    "scheduled_at": (when + timedelta(days=400, minutes=30 * (10 * i + j))).isoformat(),
                    "duration_minutes": 30}
            body = json.dumps({"type": "appointment.book", "timestamp": "2036-01-01T00:00:00Z", "data": data})
            attrs = {"org_id": org, "webhook_id": f"msg_{uuid.uuid4().hex}", "event_type": "appointment.book"}
            typed = {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}
            message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": uuid.uuid4().hex, "Body": body,
                       "MessageAttributes": typed}
            records.append(sqs_record(message, "arn:aws:sqs:us-east-1:000000000000:bench"))
        assert fn.lambda_handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
"""


def access_log_line() -> str:
    from infra.constructs.api import ACCESS_LOG_FORMAT

    values = {
        "$context.requestId": "AbCdEfGhIjKlMnO=",
        "$context.identity.sourceIp": "203.0.113.10",
        "$context.requestTime": "06/Dec/2026:19:59:59 +0000",
        "$context.requestTimeEpoch": "1796586000000",
        "$context.routeKey": "POST /appointments",
        "$context.status": "201",
        "$context.responseLatency": "23",
        "$context.integrationErrorMessage": "-",
        "$context.authorizer.error": "-",
    }
    line = ACCESS_LOG_FORMAT
    for key in sorted(values, key=len, reverse=True):
        line = line.replace(key, values[key])
    return line


def platform_bytes(traced: bool) -> int:
    lines = [START, END, REPORT + (XRAY if traced else "")]
    return sum(len(line.encode()) + EVENT_OVERHEAD for line in lines)


def _function_bytes(name: str, n: int, env: dict[str, str], org: str, secret: str = "") -> float:
    with tempfile.TemporaryFile() as out:
        done = subprocess.run(
            [sys.executable, "-c", _RUN, name, str(n), org, secret],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
        out.seek(0)
        lines = out.read().splitlines()
        if done.returncode:
            raise RuntimeError(f"{name}: " + b"\n".join(lines[-15:]).decode(errors="replace"))
    # One CloudWatch Logs event a line, each with its overhead
    return sum(len(line) + EVENT_OVERHEAD for line in lines) / n


def main() -> None:
    import boto3

    from infra.constructs.functions import TRACING
    from slotguard.aws.secrets import WebhookSecretStore
    from slotguard_local.moto import MotoServer

    progress("log volume: booking, webhook receiver, webhook processor in their own processes")
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POWERTOOLS_", "AWS_", "DATABASE_URL", "WEBHOOK_"))
    }
    base.update(POWERTOOLS_LOG_LEVEL="INFO", POWERTOOLS_METRICS_NAMESPACE="Slotguard")
    with bench_database() as db, tempfile.TemporaryDirectory() as tmp:
        moto = MotoServer(log_path=Path(tmp) / "moto.log").start()
        try:
            aws = dict(
                AWS_ENDPOINT_URL=moto.endpoint,
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench",
                AWS_DEFAULT_REGION="us-east-1",
                AWS_REGION="us-east-1",
            )
            sqs = boto3.client(
                "sqs",
                endpoint_url=moto.endpoint,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            )
            queue_url = sqs.create_queue(QueueName="bench-log-volume")["QueueUrl"]
            prefix = "bench/webhooks/"
            org = str(uuid.uuid4())
            store = WebhookSecretStore(
                prefix,
                max_age_s=0,
                sm=boto3.client(
                    "secretsmanager",
                    endpoint_url=moto.endpoint,
                    region_name="us-east-1",
                    aws_access_key_id="bench",
                    aws_secret_access_key="bench",
                ),
            )
            secret = store.rotate(org)
            common = {**base, **aws, "DATABASE_URL": db.app_url, "WEBHOOK_QUEUE_URL": queue_url}
            booking = _function_bytes("booking", N, {**common, "POWERTOOLS_SERVICE_NAME": "booking"}, org)
            receiver = _function_bytes(
                "webhook_receiver",
                N,
                {**common, "POWERTOOLS_SERVICE_NAME": "webhook_receiver", "WEBHOOK_SECRET_PREFIX": prefix},
                org,
                secret,
            )
            processor = _function_bytes(
                "webhook_processor", N // 10, {**common, "POWERTOOLS_SERVICE_NAME": "webhook_processor"}, org
            )
        finally:
            moto.stop()
    access = len(access_log_line().encode()) + EVENT_OVERHEAD
    per_booking = booking + platform_bytes(TRACING["booking"]) + access
    per_webhook = (
        receiver
        + platform_bytes(TRACING["webhook_receiver"])
        + access
        + (processor + platform_bytes(TRACING["webhook_processor"])) / 10
    )
    TABLE.add(
        "bytes logged per booking (function output + Lambda's lines + access log)",
        f"{per_booking:.0f} B ({booking:.0f} + {platform_bytes(TRACING['booking'])} + {access})",
        "-",
        "-",
        "",
    )
    TABLE.add(
        "bytes logged per webhook (receiver + access log + 1/10 processor batch)",
        f"{per_webhook:.0f} B ({receiver:.0f} + {platform_bytes(TRACING['webhook_receiver'])} + {access}"
        f" + ({processor:.0f} + {platform_bytes(TRACING['webhook_processor'])}) / 10)",
        "-",
        "-",
        "",
    )
    print(json.dumps({"booking": per_booking, "webhook": per_webhook}), file=sys.stderr)


if __name__ == "__main__":
    main()
