"""RDS IAM authentication tokens (boto3 signs them locally; no network call)."""

from __future__ import annotations

import boto3


def generate_auth_token(host: str, port: int, user: str, region: str) -> str:
    client = boto3.client("rds", region_name=region)
    return str(client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region))
