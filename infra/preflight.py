"""Before `cdk deploy`: does the account's Lambda concurrency leave room for this stage's
reserved concurrency? Lambda refuses a reservation that would leave fewer than 100 unreserved
executions, and the functions are created late in a deploy (after the database and its proxy,
15 minutes or more), so a quota that is too small (new accounts often start at 10) fails the
deploy there and rolls it back. This checks it first, in seconds.

    python -m infra.preflight [--stage dev] [--template cdk.out/Slotguard-dev.template.json]

The template is the one `make synth` wrote (reservations do not depend on the identity provider).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.names import Names
from slotguard.aws.clients import client

ROOT = Path(__file__).resolve().parents[1]
UNRESERVED_MINIMUM = 100  # Lambda keeps at least this many executions unreserved per account


def reservations(template: dict[str, Any]) -> dict[str, int]:
    """Reserved concurrency per function name, as the template sets it."""
    found: dict[str, int] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        if "ReservedConcurrentExecutions" in props and isinstance(props.get("FunctionName"), str):
            found[props["FunctionName"]] = int(props["ReservedConcurrentExecutions"])
    return found


@dataclass(frozen=True)
class Account:
    concurrent_executions: int  # the account's quota in this Region
    unreserved: int  # what no function has reserved (today)


def problem(account: Account, wanted: dict[str, int], reserved_now: dict[str, int]) -> str | None:
    """None when the stage's reservations fit; otherwise what is missing, in words."""
    needed = sum(wanted.values())
    listed = ", ".join(f"{name} {count}" for name, count in wanted.items())
    # This stage's functions that exist already give their current reservation back when changed.
    left = account.unreserved + sum(reserved_now.values()) - needed
    if left >= UNRESERVED_MINIMUM:
        return None
    return (
        f"this stage reserves {needed} concurrent executions ({listed}); "
        f"the account's quota is {account.concurrent_executions} with {account.unreserved} unreserved, which "
        f"would leave {left} unreserved, and Lambda requires at least {UNRESERVED_MINIMUM}. Ask for a higher "
        f"'Concurrent executions' quota (Service Quotas, AWS Lambda) of at least "
        f"{account.concurrent_executions + UNRESERVED_MINIMUM - left} before deploying."
    )


def account_now(lambda_client: Any) -> Account:
    limit = lambda_client.get_account_settings()["AccountLimit"]
    return Account(int(limit["ConcurrentExecutions"]), int(limit["UnreservedConcurrentExecutions"]))


def reserved_now(lambda_client: Any, names: list[str]) -> dict[str, int]:
    """What the stage's functions that already exist have reserved (0 for a function not there)."""
    current: dict[str, int] = {}
    for name in names:
        try:
            answer = lambda_client.get_function_concurrency(FunctionName=name)
        except lambda_client.exceptions.ResourceNotFoundException:
            continue
        current[name] = int(answer.get("ReservedConcurrentExecutions") or 0)
    return current


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--template", type=Path)
    args = parser.parse_args(argv)
    path = args.template or ROOT / "cdk.out" / f"{Names(args.stage).stack}.template.json"
    wanted = reservations(json.loads(path.read_text()))
    lam = client("lambda")
    found = problem(account_now(lam), wanted, reserved_now(lam, list(wanted)))
    if found:
        print(f"preflight: {found}", file=sys.stderr)
        return 1
    print(f"preflight: {sum(wanted.values())} reserved concurrent executions fit the account's quota")
    return 0


if __name__ == "__main__":
    sys.exit(main())
