"""boto3 clients. Each adapter creates its client once, when its container starts, and reuses
it. boto3 honours AWS_ENDPOINT_URL (moto, LocalStack) by itself; nothing here knows whether
it talks to AWS or an emulator."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)


def client(service: str, region: str | None = None) -> Any:
    return boto3.session.Session().client(service, region_name=region, config=_CONFIG)
