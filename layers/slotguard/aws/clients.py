"""boto3 clients. Each adapter has its client for the life of its container, created on its
first call rather than when the container starts: creating one loads the service's JSON model
and endpoint rules (≈40-70 ms each), which a cold start only needs when that invocation calls
the service (the metrics API's queue-health route, the processor's retries). boto3 honours
AWS_ENDPOINT_URL (moto, LocalStack) by itself; nothing here knows whether it talks to AWS or an
emulator."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)


class LazyClient:
    """A boto3 client, created on first use (once, whichever thread gets there first) and then
    used directly: every attribute is the client's."""

    def __init__(self, service: str, region: str | None = None) -> None:
        self._service = service
        self._region = region
        self._client: Any = None
        self._lock = threading.Lock()

    def _created(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = boto3.session.Session().client(
                        self._service, region_name=self._region, config=_CONFIG
                    )
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._created(), name)


def client(service: str, region: str | None = None) -> Any:
    return LazyClient(service, region)


def error_reason(exc: BaseException) -> str:
    """An AWS call's failure in a word: the service's error code (its last dotted part: SQS's query
    protocol says `AWS.SimpleQueueService.NonExistentQueue`), else the exception's type (the
    endpoint unreachable, a timeout, ...)."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code).rsplit(".", 1)[-1] if code else type(exc).__name__
