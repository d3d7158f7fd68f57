"""The operator command that creates and rotates an org's webhook secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

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
