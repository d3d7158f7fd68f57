"""boto3 clients, created once per container. boto3 honours AWS_ENDPOINT_URL (moto,
LocalStack) by itself; nothing here knows whether it talks to AWS or an emulator."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str, region: str | None = None) -> Any:
    return boto3.session.Session().client(service, region_name=region, config=_CONFIG)
