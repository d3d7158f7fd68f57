"""The operator command that creates and rotates an org's webhook secret."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import signed_headers
from tests.webhook_support import Pipeline


def run_admin(*args: str, prefix: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slotguard.admin", *args, "--prefix", prefix],
        capture_output=True,
        text=True,
        env=dict(os.environ) if env is None else env,
        check=False,
    )


def test_create_then_rotate_prints_each_new_secret_once(pipeline: Pipeline) -> None:
    org_id = str(uuid.uuid4())
    # When an operator creates the org's secret, then rotates it
    first = run_admin("rotate-webhook-secret", org_id, prefix=pipeline.secret_prefix)
    second = run_admin("rotate-webhook-secret", org_id, prefix=pipeline.secret_prefix)
    assert first.returncode == second.returncode == 0
    s1, s2 = first.stdout.strip(), second.stdout.strip()
    # Then each run printed one new whsec_ secret (and only that on stdout)
    assert s1.startswith("whsec_")
    assert s2.startswith("whsec_")
    assert s1 != s2
    assert s1 not in second.stdout
    # And both sign webhooks the receiver accepts during the rotation
    body = json.dumps({"type": "ping", "data": {}})
    assert pipeline.post(org_id, body, signed_headers(s1, "a", body))[0] == 202
    assert pipeline.post(org_id, body, signed_headers(s2, "b", body))[0] == 202
    # When rotated keeping no previous secret, only the newest works
    third = run_admin("rotate-webhook-secret", org_id, "--keep-previous", "0", prefix=pipeline.secret_prefix)
    s3 = third.stdout.strip()
    assert pipeline.post(org_id, body, signed_headers(s2, "c", body))[0] == 401
    assert pipeline.post(org_id, body, signed_headers(s3, "d", body))[0] == 202


def test_bad_org_id_is_refused(pipeline: Pipeline) -> None:
    result = run_admin("rotate-webhook-secret", "not-a-uuid", prefix=pipeline.secret_prefix)
    assert result.returncode == 2
    assert "invalid UUID" in result.stderr


def test_aws_region_is_honoured_like_aws_default_region(pipeline: Pipeline) -> None:
    # Given an environment that names its region the way the README does (AWS_REGION only)
    env = {k: v for k, v in os.environ.items() if k != "AWS_DEFAULT_REGION"}
    env["AWS_REGION"] = "us-east-1"
    # When the operator creates an org's secret
    result = run_admin("rotate-webhook-secret", str(uuid.uuid4()), prefix=pipeline.secret_prefix, env=env)
    # Then it works (no NoRegionError)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("whsec_")


def test_revoke_previous_takes_effect_within_the_secret_cache_bound(
    pipeline: Pipeline, monkeypatch: Any
) -> None:
    from slotguard_local.functions import load_function

    # Given a receiver caching secrets for 1 s, and an org whose secret leaked
    monkeypatch.setenv("WEBHOOK_SECRET_CACHE_S", "1")
    pipeline.receiver = load_function("webhook_receiver")
    org_id = str(uuid.uuid4())
    leaked = run_admin("rotate-webhook-secret", org_id, prefix=pipeline.secret_prefix).stdout.strip()
    body = json.dumps({"type": "ping", "data": {}})
    assert pipeline.post(org_id, body, signed_headers(leaked, "before", body))[0] == 202
    # When an operator rotates it revoking every previous secret
    result = run_admin("rotate-webhook-secret", org_id, "--revoke-previous", prefix=pipeline.secret_prefix)
    assert result.returncode == 0, result.stderr
    new = result.stdout.strip()
    assert "revoked" in result.stderr
    # Then once the cache bound has passed, the leaked secret is refused and the new one accepted
    time.sleep(1.2)
    assert pipeline.post(org_id, body, signed_headers(leaked, "after", body))[0] == 401
    assert pipeline.post(org_id, body, signed_headers(new, "new", body))[0] == 202
    assert json.loads(
        pipeline.store._sm.get_secret_value(SecretId=pipeline.store.name_for(org_id))["SecretString"]
    )["secrets"] == [new]


def test_kept_previous_secrets_expire(pipeline: Pipeline) -> None:
    import boto3

    from slotguard.aws.secrets import WebhookSecretStore

    # Given a store whose wall clock the test moves
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    store = WebhookSecretStore(
        pipeline.secret_prefix, max_age_s=0, sm=boto3.client("secretsmanager"), wallclock=lambda: now[0]
    )
    org_id = str(uuid.uuid4())
    first = store.rotate(org_id)
    # When the secret is rotated keeping the previous one for 24 hours (the default)
    second = store.rotate(org_id)
    # Then both are active until then, and only the new one after
    assert store.active_secrets(org_id) == [second, first]
    now[0] += timedelta(hours=23, minutes=59)
    assert store.active_secrets(org_id) == [second, first]
    now[0] += timedelta(minutes=2)
    assert store.active_secrets(org_id) == [second]
    # And a later rotation never extends a kept secret's expiry, and drops expired ones
    third = store.rotate(org_id, keep_previous=2, previous_valid_for=timedelta(hours=48))
    assert store.active_secrets(org_id) == [third, second]
    now[0] += timedelta(hours=47, minutes=59)
    assert store.active_secrets(org_id) == [third, second]
    fourth = store.rotate(org_id, keep_previous=3, previous_valid_for=timedelta(hours=5))
    assert store.active_secrets(org_id) == [fourth, third, second]
    now[0] += timedelta(minutes=2)  # the second's 48 hours are over: not extended by the rotation
    assert store.active_secrets(org_id) == [fourth, third]
    now[0] += timedelta(hours=5)
    assert store.active_secrets(org_id) == [fourth]


def test_the_admin_command_sets_how_long_kept_secrets_stay_valid(pipeline: Pipeline) -> None:
    org_id = str(uuid.uuid4())
    run_admin("rotate-webhook-secret", org_id, prefix=pipeline.secret_prefix)
    result = run_admin(
        "rotate-webhook-secret", org_id, "--previous-valid-hours", "2", prefix=pipeline.secret_prefix
    )
    assert result.returncode == 0, result.stderr
    value = json.loads(
        pipeline.store._sm.get_secret_value(SecretId=pipeline.store.name_for(org_id))["SecretString"]
    )
    # (the kept secret's entry is keyed as docs say and as values an earlier release wrote are:
    # the first 16 hex digits of its SHA-256)
    current, kept = value["secrets"]
    [(key, old)] = value["expires_at"].items()
    assert (
        key
        == hashlib.sha256(kept.encode()).hexdigest()[:16]
        != hashlib.sha256(current.encode()).hexdigest()[:16]
    )
    left = datetime.fromisoformat(old) - datetime.now(UTC)
    assert timedelta(hours=1, minutes=58) < left <= timedelta(hours=2)
    assert "expires" in result.stderr


def test_the_secret_cache_cannot_be_set_beyond_its_documented_bound() -> None:
    import pytest
    from pydantic import ValidationError

    from slotguard.config import MAX_SECRET_CACHE_S, ReceiverConfig

    assert MAX_SECRET_CACHE_S == 300
    assert ReceiverConfig.from_env({"WEBHOOK_QUEUE_URL": "q"}).webhook_secret_cache_s == 60
    with pytest.raises(ValidationError):
        ReceiverConfig.from_env({"WEBHOOK_QUEUE_URL": "q", "WEBHOOK_SECRET_CACHE_S": "301"})
