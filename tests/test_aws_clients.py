"""An adapter's boto3 client is created on its first call, once, and is then the client itself."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from slotguard.aws import clients


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every boto3 client created while the test runs (its service name)."""
    made: list[Any] = []
    real = clients.boto3.session.Session.client

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(clients.boto3.session.Session, "client", counting)
    return made


def test_a_client_is_created_on_first_use_once_and_used_directly(aws: str, created: list[Any]) -> None:
    # Given an adapter's client: nothing is created while the container starts
    sqs = clients.client("sqs")
    assert created == []
    # When several threads use it at once
    threads = [threading.Thread(target=lambda: sqs.list_queues()) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then one client was created, with the adapters' configuration, and it answers as boto3's
    assert created == [("sqs",)]
    assert sqs.meta.service_model.service_name == "sqs"
    assert sqs.meta.config.connect_timeout == 3 and sqs.meta.config.read_timeout == 10
    assert sqs.list_queues()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_the_receivers_secret_store_creates_no_client_until_a_webhook_needs_a_secret(
    aws: str, created: list[Any]
) -> None:
    from slotguard.aws.secrets import WebhookSecretStore

    # Given the receiver's secret store, made at init
    store = WebhookSecretStore("slotguard/test/webhooks/", unknown_ttl_s=60)
    # Then no client exists yet (Powertools' provider would touch it to tag its user agent)
    assert created == []
    # And the first lookup creates the one Secrets Manager client and answers
    assert store.active_secrets("00000000-0000-4000-8000-000000000000") is None
    assert created == [("secretsmanager",)]
