"""RDS IAM authentication tokens: a SigV4-presigned `connect` URL, signed locally (no network
call). Signed here with the standard library when the credentials are in the environment (as
Lambda provides them), so a function that talks to no AWS service does not import botocore at
all (≈100 ms of cold start, see docs/decisions.md); otherwise boto3 signs it (a developer's
profile, SSO, ...). Both produce the same token (tested)."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime
from urllib.parse import quote

TOKEN_EXPIRES_S = 900
_ALGORITHM = "AWS4-HMAC-SHA256"


def _quote(value: str) -> str:
    return quote(value, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def presign_connect(
    host: str,
    port: int,
    user: str,
    region: str,
    *,
    access_key: str,
    secret_key: str,
    session_token: str | None = None,
    now: datetime | None = None,
) -> str:
    """The token `generate_db_auth_token` makes: SigV4 query signing of GET / for service rds-db."""
    now = now or datetime.now(UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/{region}/rds-db/aws4_request"
    params = {
        "Action": "connect",
        "DBUser": user,
        "X-Amz-Algorithm": _ALGORITHM,
        "X-Amz-Credential": f"{access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(TOKEN_EXPIRES_S),
        "X-Amz-SignedHeaders": "host",
    }
    if session_token:
        params["X-Amz-Security-Token"] = session_token
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()))
    canonical = "\n".join(
        ["GET", "/", query, f"host:{host}:{port}", "", "host", hashlib.sha256(b"").hexdigest()]
    )
    to_sign = "\n".join([_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), "rds-db"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{host}:{port}/?{query}&X-Amz-Signature={signature}"


def generate_auth_token(host: str, port: int, user: str, region: str) -> str:
    access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access_key and secret_key:
        return presign_connect(
            host,
            port,
            user,
            region,
            access_key=access_key,
            secret_key=secret_key,
            session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
        )
    import boto3  # credentials from a profile, SSO, instance metadata...

    client = boto3.client("rds", region_name=region)
    return str(client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region))
