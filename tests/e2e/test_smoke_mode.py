"""`make smoke`: the end-to-end suite run against a given API URL, token and webhook secret
(a deployment), proven here against a local stack standing in for one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.stack_process import _TEST_ONLY, StackProcess, http

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_suite_runs_against_any_api_url_token_and_webhook_secret(tmp_path: Path) -> None:
    # Given a running API known only by its URL, one org's token and webhook secret (and, optionally,
    # another org's token), whose queue-health reads the webhook worker's state from Lambda's API
    # (the processor's event source mapping, in moto's), as a deployment's does
    stack = StackProcess(tmp_path / ".local", extra_env={"SLOTGUARD_WORKER_STATE": "lambda"}).start()
    try:
        org, other = stack.info["orgs"][0], stack.info["orgs"][1]
        env = {k: v for k, v in os.environ.items() if k not in _TEST_ONLY}
        env.update(
            SLOTGUARD_API_URL=stack.info["api_url"],
            SLOTGUARD_TOKEN=org["token"],
            SLOTGUARD_WEBHOOK_SECRET=org["webhook_secret"],
            SLOTGUARD_OTHER_TOKEN=other["token"],
        )
        # When the end-to-end suite runs in smoke mode, twice (a deployment keeps what a run made)
        runs = [
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "tests/e2e/test_local_stack.py",
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            for _ in range(2)
        ]
        log = stack.log()
        _, health = http("GET", f"{stack.info['api_url']}/webhook-metrics/queue-health", token=org["token"])
    finally:
        stack.terminate()
    assert "worker state: the processor's event source mapping" in log
    assert (health["worker"]["source"], health["worker"]["state"]) == ("lambda", "Enabled"), health
    # Then the booking lifecycle, tenancy, a signed webhook through to its appointment and the
    # authorizer's refusals pass against it, and the tests needing the local stack's internals skip
    for run in runs:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        # (the tampered-token cases need no key: they run against a deployment too)
        assert "10 passed" in run.stdout, run.stdout[-2000:]
