"""Functions and event source mappings in the AWS emulator's Lambda API, as a deployed stage has
them. The emulator keeps the records; the local stack's process containers run the code and its
pollers (slotguard_local.poller) do what a mapping does.

`SLOTGUARD_WORKER_STATE=lambda` makes the stack register the webhook processor and its mapping on
the webhook queue, and has `GET /webhook-metrics/queue-health` read the worker's state from
Lambda's API (GetEventSourceMapping, slotguard.aws.workers.EventSourceMappingState), the path a
deployment takes, instead of the local poller's state file. Only on the stack's own moto: moto's SQS
would otherwise run an enabled mapping itself on every send (sqs_rules turns that off; a poller
that cannot run the function would take the messages), and LocalStack's would poll the queue too.
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

WORKER_STATES = ("file", "lambda")

ASSUME_BY_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
EMPTY_HANDLER = "def lambda_handler(event, context):\n    return None\n"


def worker_state_mode() -> str:
    """SLOTGUARD_WORKER_STATE: file (the default: the local poller's state file) or lambda."""
    value = os.environ.get("SLOTGUARD_WORKER_STATE", "").strip().lower() or "file"
    if value not in WORKER_STATES:
        raise ValueError(f"SLOTGUARD_WORKER_STATE must be file or lambda, not {value!r}")
    return value


def create_function(
    name: str, *, handler_source: str = EMPTY_HANDLER, lam: Any = None, iam: Any = None
) -> str:
    """A Python function in the Lambda API, with a role Lambda can assume; its ARN."""
    import boto3

    iam = iam or boto3.client("iam")
    lam = lam or boto3.client("lambda")
    role = iam.create_role(
        RoleName=f"fn-{uuid.uuid4().hex[:12]}", AssumeRolePolicyDocument=json.dumps(ASSUME_BY_LAMBDA)
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", handler_source)
    arn: str = lam.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="handler.lambda_handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]
    return arn


def register_queue_worker(
    name: str,
    handler: Path,
    queue_url: str,
    *,
    batch_size: int,
    batching_window_s: int,
    maximum_concurrency: int,
    sqs: Any = None,
    lam: Any = None,
) -> str:
    """The function and its enabled mapping on the queue (partial batch responses, as deployed);
    the mapping's UUID."""
    import boto3

    sqs = sqs or boto3.client("sqs")
    lam = lam or boto3.client("lambda")
    create_function(name, handler_source=handler.read_text(), lam=lam)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    mapping: str = lam.create_event_source_mapping(
        EventSourceArn=queue_arn,
        FunctionName=name,
        BatchSize=batch_size,
        MaximumBatchingWindowInSeconds=batching_window_s,
        ScalingConfig={"MaximumConcurrency": maximum_concurrency},
        FunctionResponseTypes=["ReportBatchItemFailures"],
        Enabled=True,
    )["UUID"]
    return mapping
