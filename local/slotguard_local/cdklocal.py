"""`cdklocal deploy` of the CDK app's LocalStack stage (infra/localstack_stack.py) into the stack's
LocalStack: the webhook queues, the alarms and their topic, the dashboard and the cleanup rule, made
by the same construct code that deploys to AWS. The local stack then runs on the deployed queues.

cdklocal (npm `aws-cdk-local`, pinned in package.json) wraps the pinned `aws-cdk` CLI; it talks to
LocalStack through AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_S3, with test credentials.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from slotguard_local.functions import ROOT

STACK_NAME = "Slotguard-localstack"
CDKLOCAL = ROOT / "node_modules" / ".bin" / "cdklocal"


class CdkLocalMissing(RuntimeError):
    pass


def _environment(endpoint: str, region: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ENDPOINT_URL_S3=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",  # noqa: S106 - LocalStack's test credentials
        AWS_REGION=region,
        AWS_DEFAULT_REGION=region,
        CDK_DISABLE_CLI_TELEMETRY="true",
        JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION="1",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    return env


def deploy(endpoint: str, region: str, workdir: Path, log_path: Path) -> dict[str, str]:
    """Bootstrap, then deploy the LocalStack stage; its outputs (WebhookQueueUrl, ...)."""
    if not CDKLOCAL.exists():
        raise CdkLocalMissing(
            f"{CDKLOCAL} is missing: `make local AWS=localstack CDK=1` installs it (npm ci)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    outputs_file = workdir / "outputs.json"
    outputs_file.unlink(missing_ok=True)
    assembly = str(workdir / "cdk.out")
    flags = ["--no-notices", "--no-version-reporting"]
    # Synthesize once (the Python app, with cdk-nag); bootstrap and deploy read that cloud assembly.
    steps = (
        ["synth", STACK_NAME, "-c", "stage=localstack", "-o", assembly, "--quiet", *flags],
        ["bootstrap", "--app", assembly, *flags],
        [
            "deploy",
            STACK_NAME,
            "--app",
            assembly,
            *flags,
            "--require-approval",
            "never",
            "--progress",
            "events",
            "--outputs-file",
            str(outputs_file),
        ],
    )
    with open(log_path, "ab") as log:
        for args in steps:
            started = time.monotonic()
            done = subprocess.run(
                [str(CDKLOCAL), *args],
                cwd=ROOT,  # cdk.json: the app is `.venv/bin/python -m infra.app`
                env=_environment(endpoint, region),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=600,
            )
            if done.returncode != 0:
                raise RuntimeError(f"cdklocal {args[0]} failed ({done.returncode}); its output: {log_path}")
            log.write(f"[slotguard] cdklocal {args[0]}: {time.monotonic() - started:.1f}s\n".encode())
    outputs: dict[str, str] = json.loads(outputs_file.read_text())[STACK_NAME]
    return outputs
