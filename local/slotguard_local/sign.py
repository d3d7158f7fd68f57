"""Send a signed webhook (Standard Webhooks) to the local stack, as a sender would.

    python -m slotguard_local.sign book --scheduled-at 2030-01-08T09:00:00Z [--duration 30]
                                        [--contact-id UUID] [--resource-id UUID] [--notes TEXT]
    python -m slotguard_local.sign cancel APPOINTMENT_ID [--reason TEXT]
    python -m slotguard_local.sign reschedule APPOINTMENT_ID --scheduled-at T [--duration N]
    python -m slotguard_local.sign send TYPE DATA_JSON          (any event type, any data)

Options, before or after the command: --org N (the Nth org of stack.json, default 0), --stack
PATH (default $SLOTGUARD_HOME/stack.json, else .local/stack.json), --webhook-id ID (default a
fresh msg_<uuid>; send one twice to see the duplicate skipped), --secret whsec_... (default the
org's current secret, read from the stack's Secrets Manager as the receiver reads it, so a
`rotate-webhook-secret --local` takes effect at once). Prints the receiver's answer, e.g.
{"id":"msg_…","status":"queued"}; exits 1 with the status and answer on stderr when it is not 2xx.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from standardwebhooks.webhooks import Webhook

from slotguard.aws.secrets import SecretStoreUnavailable, WebhookSecretStore


def _stack_json() -> Path:
    return Path(os.environ.get("SLOTGUARD_HOME") or ".local") / "stack.json"


def _add_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes. A command's own copy has no defaults (SUPPRESS), so an
    option given before the command is not reset by the command's parser."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--stack", type=Path, default=default(None), help="the stack's stack.json")
    parser.add_argument("--org", type=int, default=default(0), help="which org of stack.json (default 0)")
    parser.add_argument(
        "--webhook-id", default=default(None), help="webhook-id header (default: a fresh one)"
    )
    parser.add_argument(
        "--secret", default=default(None), help="signing secret (default: the org's current one)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m slotguard_local.sign", description="Send a signed webhook to the local stack."
    )
    _add_options(parser, defaults=True)
    options = argparse.ArgumentParser(add_help=False)
    _add_options(options, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[options])

    book = command("book", "appointment.book")
    book.add_argument("--scheduled-at", required=True, help="RFC 3339 with offset")
    book.add_argument("--duration", type=int, default=30, help="minutes (default 30)")
    book.add_argument("--contact-id", type=uuid.UUID, default=None, help="default: a new UUID")
    book.add_argument("--resource-id", type=uuid.UUID, default=None)
    book.add_argument("--notes", default=None)

    cancel = command("cancel", "appointment.cancel")
    cancel.add_argument("appointment_id", type=uuid.UUID)
    cancel.add_argument("--reason", default=None)

    reschedule = command("reschedule", "appointment.reschedule")
    reschedule.add_argument("appointment_id", type=uuid.UUID)
    reschedule.add_argument("--scheduled-at", required=True)
    reschedule.add_argument("--duration", type=int, default=None)

    send = command("send", "any event type with any JSON data")
    send.add_argument("type")
    send.add_argument("data", type=json.loads, help="the event's data, as JSON")
    return parser


def _event(args: argparse.Namespace) -> tuple[str, Any]:
    if args.command == "book":
        data: dict[str, Any] = {
            "contact_id": str(args.contact_id or uuid.uuid4()),
            "scheduled_at": args.scheduled_at,
            "duration_minutes": args.duration,
        }
        if args.resource_id:
            data["resource_id"] = str(args.resource_id)
        if args.notes is not None:
            data["notes"] = args.notes
        return "appointment.book", data
    if args.command == "cancel":
        data = {"appointment_id": str(args.appointment_id)}
        if args.reason is not None:
            data["reason"] = args.reason
        return "appointment.cancel", data
    if args.command == "reschedule":
        data = {"appointment_id": str(args.appointment_id), "scheduled_at": args.scheduled_at}
        if args.duration is not None:
            data["duration_minutes"] = args.duration
        return "appointment.reschedule", data
    return args.type, args.data


def _current_secret(stack: dict[str, Any], org_id: str) -> str:
    """The org's newest secret in the stack's Secrets Manager: what the receiver checks against,
    after a rotation too (stack.json keeps the secret the stack created)."""
    sm = boto3.client(
        "secretsmanager",
        endpoint_url=stack["aws_endpoint_url"],
        region_name=stack["aws_region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - the local emulator takes any key
    )
    store = WebhookSecretStore(prefix=stack["webhook_secret_prefix"], max_age_s=0, sm=sm)
    try:
        secrets = store.active_secrets(org_id)
    except SecretStoreUnavailable as exc:
        raise SystemExit(
            f"the local stack's Secrets Manager did not answer (is `make local` running?): {exc}"
        ) from None
    if not secrets:
        raise SystemExit(f"the local stack has no webhook secret for org {org_id}")
    return secrets[0]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = args.stack or _stack_json()
    try:
        stack = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"no local stack found: {path} does not exist (is `make local` running?)", file=sys.stderr)
        return 2
    org = stack["orgs"][args.org]
    event_type, data = _event(args)
    now = datetime.now(UTC)
    body = json.dumps(
        {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
    )
    webhook_id = args.webhook_id or f"msg_{uuid.uuid4().hex}"
    signature = Webhook(args.secret or _current_secret(stack, org["org_id"])).sign(webhook_id, now, body)
    request = urllib.request.Request(  # noqa: S310 - the stack's URL, from its own stack.json
        f"{stack['api_url']}/webhooks/{org['org_id']}",
        data=body.encode(),
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as err:
        print(f"{err.code} {err.read().decode()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
