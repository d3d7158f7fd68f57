"""`make smoke`: the end-to-end suite against a deployed API instead of a local stack.

Set SLOTGUARD_API_URL (the stack's ApiUrl output), SLOTGUARD_TOKEN (a JWT from your identity
provider with `sub` and `org_id`) and SLOTGUARD_WEBHOOK_SECRET (that org's `whsec_...`, from
`python -m slotguard.admin rotate-webhook-secret`). Optional: SLOTGUARD_ORG_ID (else the token's
`org_id` claim), SLOTGUARD_ADMIN_TOKEN, and SLOTGUARD_OTHER_TOKEN (another org's token: checks
that one org cannot read another's appointments), SLOTGUARD_WEBHOOK_URL (the stack's WebhookUrl
output, CloudFront in front of the webhook route: in AWS the route is not on the API's URL)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt

REQUIRED = ("SLOTGUARD_API_URL", "SLOTGUARD_TOKEN", "SLOTGUARD_WEBHOOK_SECRET")


@dataclass
class RemoteStack:
    """Looks like StackProcess to the tests: `info` as in .local/stack.json."""

    info: dict[str, Any]

    @classmethod
    def from_env(cls) -> RemoteStack | None:
        if not os.environ.get("SLOTGUARD_API_URL"):
            return None
        missing = [name for name in REQUIRED if not os.environ.get(name)]
        if deployed() and not os.environ.get("SLOTGUARD_WEBHOOK_URL"):
            # A deployment serves the webhook route at its WebhookUrl (CloudFront), not on the API
            missing.append("SLOTGUARD_WEBHOOK_URL")
        if missing:
            raise RuntimeError(f"make smoke needs {', '.join(missing)} (see tests/e2e/remote.py)")
        token = os.environ["SLOTGUARD_TOKEN"]
        org_id = (
            os.environ.get("SLOTGUARD_ORG_ID")
            or jwt.decode(token, options={"verify_signature": False})["org_id"]
        )
        orgs = [
            {
                "org_id": org_id,
                "token": token,
                "admin_token": os.environ.get("SLOTGUARD_ADMIN_TOKEN", ""),
                "webhook_secret": os.environ["SLOTGUARD_WEBHOOK_SECRET"],
            }
        ]
        if os.environ.get("SLOTGUARD_OTHER_TOKEN"):
            other = os.environ["SLOTGUARD_OTHER_TOKEN"]
            claims = jwt.decode(other, options={"verify_signature": False})
            orgs.append({"org_id": claims["org_id"], "token": other, "admin_token": "", "webhook_secret": ""})
        return cls({"api_url": os.environ["SLOTGUARD_API_URL"].rstrip("/"), "orgs": orgs})


def remote() -> bool:
    return bool(os.environ.get("SLOTGUARD_API_URL"))


def deployed() -> bool:
    """make smoke against a deployment, not a local stack standing in for one (on a loopback)."""
    api_host = urlsplit(os.environ.get("SLOTGUARD_API_URL", "")).hostname or ""
    return remote() and api_host not in ("127.0.0.1", "localhost", "::1")
