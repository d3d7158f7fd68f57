"""Operator commands.

    python -m slotguard.admin rotate-webhook-secret ORG_ID [--keep-previous N] [--prefix P]
                                                   [--local [STACK_JSON]]

Creates the org's webhook signing secret, or rotates it: the new secret goes in front and
the N previous ones stay active (default 1) so senders can switch without a gap. The new
secret is printed once, on stdout; it is never logged.

Against AWS, the standard configuration applies (credentials, AWS_REGION or
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL). `--local` targets the local stack instead: its AWS
endpoint, region and secret prefix come from its stack.json (default:
$SLOTGUARD_HOME/stack.json, else .local/stack.json), and no AWS setting is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from uuid import UUID

from slotguard.aws.clients import client
from slotguard.aws.secrets import WebhookSecretStore

DEFAULT_PREFIX = "slotguard/webhooks/"


def _local_stack_json() -> str:
    return str(Path(os.environ.get("SLOTGUARD_HOME") or ".local") / "stack.json")


def _use_local_stack(path: str) -> str:
    """Point this process's AWS configuration at the local stack; its secret prefix."""
    try:
        stack = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(f"no local stack found: {path} does not exist (is `make local` running?)") from None
    os.environ.update(
        AWS_ENDPOINT_URL=stack["aws_endpoint_url"],
        AWS_REGION=stack["aws_region"],
        AWS_DEFAULT_REGION=stack["aws_region"],
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",  # noqa: S106 - the local emulator takes any key
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    prefix: str = stack.get("webhook_secret_prefix", DEFAULT_PREFIX)
    return prefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slotguard.admin")
    commands = parser.add_subparsers(dest="command", required=True)
    rotate = commands.add_parser("rotate-webhook-secret", help="create or rotate an org's webhook secret")
    rotate.add_argument("org_id", type=UUID)
    rotate.add_argument(
        "--keep-previous", type=int, default=1, help="older secrets to keep active (default 1)"
    )
    rotate.add_argument("--prefix", default=None, help=f"secret name prefix (default {DEFAULT_PREFIX})")
    rotate.add_argument(
        "--local",
        nargs="?",
        const=_local_stack_json(),
        default=None,
        metavar="STACK_JSON",
        help="use the local stack (`make local`) described by STACK_JSON (default: %(const)s)",
    )
    args = parser.parse_args(argv)
    if args.keep_previous < 0:
        parser.error("--keep-previous must be >= 0")
    prefix = args.prefix or os.environ.get("WEBHOOK_SECRET_PREFIX") or DEFAULT_PREFIX
    if args.local is not None:
        local_prefix = _use_local_stack(args.local)
        prefix = args.prefix or local_prefix
    # boto3 reads AWS_DEFAULT_REGION only; AWS_REGION is the variable most tools (and the SDKs
    # of other languages) use, so honour both.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    store = WebhookSecretStore(prefix, max_age_s=0, sm=client("secretsmanager", region=region))
    secret = store.rotate(str(args.org_id), keep_previous=args.keep_previous)
    print(secret)
    print(
        f"stored in {store.name_for(str(args.org_id))}; {args.keep_previous} previous secret(s) kept active",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
