"""Operator commands.

    python -m slotguard.admin rotate-webhook-secret ORG_ID [--keep-previous N] [--prefix P]

Creates the org's webhook signing secret, or rotates it: the new secret goes in front and
the N previous ones stay active (default 1) so senders can switch without a gap. The new
secret is printed once, on stdout; it is never logged.
"""

from __future__ import annotations

import argparse
import os
import sys
from uuid import UUID

from slotguard.aws.secrets import WebhookSecretStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slotguard.admin")
    commands = parser.add_subparsers(dest="command", required=True)
    rotate = commands.add_parser("rotate-webhook-secret", help="create or rotate an org's webhook secret")
    rotate.add_argument("org_id", type=UUID)
    rotate.add_argument(
        "--keep-previous", type=int, default=1, help="older secrets to keep active (default 1)"
    )
    rotate.add_argument("--prefix", default=os.environ.get("WEBHOOK_SECRET_PREFIX", "slotguard/webhooks/"))
    args = parser.parse_args(argv)
    if args.keep_previous < 0:
        parser.error("--keep-previous must be >= 0")
    store = WebhookSecretStore(args.prefix, max_age_s=0)
    secret = store.rotate(str(args.org_id), keep_previous=args.keep_previous)
    print(secret)
    print(
        f"stored in {store.name_for(str(args.org_id))}; {args.keep_previous} previous secret(s) kept active",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
