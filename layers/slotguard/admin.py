"""Operator commands.

    python -m slotguard.admin rotate-webhook-secret ORG_ID [--keep-previous N | --revoke-previous]
                                                   [--previous-valid-hours H] [--prefix P]
                                                   [--local [STACK_JSON]]

Creates the org's webhook signing secret, or rotates it: the new secret goes in front and
the N newest previous ones stay active (default 1) for H more hours at most (default 24), so
senders can switch without a gap. `--revoke-previous` keeps none: for a leaked secret. Receivers
refuse a revoked secret within WEBHOOK_SECRET_CACHE_S (default 60 s, at most 300 s) and an
expired one at its expiry. The new secret is printed once, on stdout; it is never logged.

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
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from slotguard.aws.clients import client
from slotguard.aws.secrets import PREVIOUS_VALID_FOR, WebhookSecretStore
from slotguard.config import MAX_SECRET_CACHE_S

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
    keep = rotate.add_mutually_exclusive_group()
    keep.add_argument("--keep-previous", type=int, default=1, help="older secrets to keep active (default 1)")
    keep.add_argument(
        "--revoke-previous",
        action="store_true",
        help="keep no older secret (a leaked one): receivers refuse them within their secret cache bound",
    )
    rotate.add_argument(
        "--previous-valid-hours",
        type=float,
        default=PREVIOUS_VALID_FOR.total_seconds() / 3600,
        help="how long kept older secrets stay valid at most (default %(default)g)",
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
    if args.previous_valid_hours <= 0:
        parser.error("--previous-valid-hours must be > 0")
    keep_previous = 0 if args.revoke_previous else args.keep_previous
    prefix = args.prefix or os.environ.get("WEBHOOK_SECRET_PREFIX") or DEFAULT_PREFIX
    if args.local is not None:
        local_prefix = _use_local_stack(args.local)
        prefix = args.prefix or local_prefix
    # boto3 reads AWS_DEFAULT_REGION only; AWS_REGION is the variable most tools (and the SDKs
    # of other languages) use, so honour both.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    store = WebhookSecretStore(prefix, max_age_s=0, sm=client("secretsmanager", region=region))
    valid_for = timedelta(hours=args.previous_valid_hours)
    secret = store.rotate(str(args.org_id), keep_previous=keep_previous, previous_valid_for=valid_for)
    print(secret)
    where = f"stored in {store.name_for(str(args.org_id))}"
    if keep_previous == 0:
        print(
            f"{where}; every previous secret revoked: receivers refuse them within their secret cache"
            f" (WEBHOOK_SECRET_CACHE_S, at most {MAX_SECRET_CACHE_S} s)",
            file=sys.stderr,
        )
    else:
        print(
            f"{where}; up to {keep_previous} previous secret(s) kept active; each expires within"
            f" {args.previous_valid_hours:g} h",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
