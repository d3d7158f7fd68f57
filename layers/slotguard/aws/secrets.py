"""Secrets Manager adapter: per-org webhook signing secrets.

Each org has one secret named `<prefix><org_id>` whose value is
`{"secrets": ["whsec_...", ...], "expires_at": {"<fingerprint>": "<RFC 3339>", ...}}`: every
secret, newest first (several during a rotation), and when each kept previous one stops being
accepted (`expires_at`, keyed by fingerprint(); a secret without an entry does not expire). A
reader that knows no `expires_at` (the previous release) still reads `secrets` as before.
Reads are cached with Powertools parameters for `max_age` seconds, and expiry is checked against
the cached value on every read: so a secret revoked by a rotation stops being accepted within
`max_age` seconds, and one that expires stops at its expiry. An org id with no secret is
remembered for `unknown_ttl_s` seconds, so junk traffic on the public webhook route is not one
Secrets Manager call per request.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets as pysecrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError

from slotguard.aws.clients import client


class SecretStoreUnavailable(RuntimeError):
    """Secrets Manager could not answer (not: the org has no secret)."""


# How long a rotation keeps the previous secret valid by default: time for the sender to switch.
PREVIOUS_VALID_FOR = timedelta(hours=24)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(pysecrets.token_bytes(32)).decode()


def fingerprint(secret: str) -> str:
    """A secret's name in `expires_at`: not the secret (the value is read by the same readers
    anyway, but an id is what an operator may paste into a ticket)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _expiry(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)  # unreadable: treated as expired
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _active(value: Any, now: datetime) -> list[str]:
    found = value.get("secrets") if isinstance(value, dict) else None
    if not isinstance(found, list):
        return []
    expires = value.get("expires_at") if isinstance(value.get("expires_at"), dict) else {}
    active = []
    for secret in found:
        if not (isinstance(secret, str) and secret.startswith("whsec_")):
            continue
        until = expires.get(fingerprint(secret))
        if until is not None and _expiry(until) <= now:
            continue
        active.append(secret)
    return active


def _not_found(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, ClientError) and exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class WebhookSecretStore:
    MAX_UNKNOWN = 10_000  # bounded: random org ids cannot grow the container's memory

    def __init__(
        self,
        prefix: str,
        max_age_s: int = 300,
        sm: Any | None = None,
        unknown_ttl_s: float = 0,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._prefix = prefix
        self._max_age_s = max_age_s
        self._sm = sm or client("secretsmanager")
        self._unknown_ttl_s = unknown_ttl_s
        self._clock = clock
        self._wallclock = wallclock
        self._unknown: dict[str, float] = {}  # org id -> when it may be asked again
        self._refreshed: dict[str, float] = {}  # org id -> when its secrets were last re-read

    @functools.cached_property
    def _provider(self) -> SecretsProvider:
        """Made on first use: Powertools' provider touches its boto3 client (to tag its user agent),
        which would create the lazy client, and load Secrets Manager's model, at init."""
        return SecretsProvider(boto3_client=self._sm)

    def name_for(self, org_id: str) -> str:
        return f"{self._prefix}{org_id}"

    def active_secrets(self, org_id: str) -> list[str] | None:
        """The org's active secrets, or None when the org has none (unknown org)."""
        now = self._clock()
        if self._unknown.get(org_id, 0.0) > now:
            return None
        return self._read(org_id, now, force_fetch=False)

    def _read(self, org_id: str, now: float, *, force_fetch: bool) -> list[str] | None:
        try:
            value = self._provider.get(
                self.name_for(org_id), max_age=self._max_age_s, transform="json", force_fetch=force_fetch
            )
        except GetParameterError as exc:
            if _not_found(exc):
                self._remember_unknown(org_id, now)
                return None
            raise SecretStoreUnavailable(str(exc)) from exc
        self._unknown.pop(org_id, None)
        return _active(value, self._wallclock()) or None

    # A signature no cached secret verifies re-reads the org's secrets at most this often, so a
    # rotation takes effect at once (the sender signs with the new secret) while forged
    # signatures cost Secrets Manager at most one read per org per interval and container.
    REFRESH_MIN_INTERVAL_S = 5.0
    MAX_REFRESHED = 10_000

    def refreshed_secrets(self, org_id: str) -> list[str] | None:
        """The org's active secrets read again now, past the cache; None when they were re-read
        less than REFRESH_MIN_INTERVAL_S ago (or the org has none)."""
        now = self._clock()
        if self._refreshed.get(org_id, float("-inf")) > now - self.REFRESH_MIN_INTERVAL_S:
            return None
        if len(self._refreshed) >= self.MAX_REFRESHED:
            self._refreshed.clear()
        self._refreshed[org_id] = now
        return self._read(org_id, now, force_fetch=True)

    def _remember_unknown(self, org_id: str, now: float) -> None:
        if self._unknown_ttl_s <= 0:
            return
        if len(self._unknown) >= self.MAX_UNKNOWN:
            self._unknown = {k: v for k, v in self._unknown.items() if v > now}
            if len(self._unknown) >= self.MAX_UNKNOWN:
                self._unknown.clear()
        self._unknown[org_id] = now + self._unknown_ttl_s

    def rotate(
        self, org_id: str, *, keep_previous: int = 1, previous_valid_for: timedelta = PREVIOUS_VALID_FOR
    ) -> str:
        """Create the org's secret, or add a new one in front keeping the `keep_previous` newest
        still-active old ones, each valid for `previous_valid_for` more at most (never longer
        than it already was). keep_previous=0 revokes every previous secret."""
        name = self.name_for(org_id)
        new = new_webhook_secret()
        try:
            current = json.loads(self._sm.get_secret_value(SecretId=name)["SecretString"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            self._sm.create_secret(
                Name=name,
                SecretString=json.dumps({"secrets": [new], "expires_at": {}}),
                Description=f"slotguard webhook signing secrets of org {org_id}",
            )
            return new
        now = self._wallclock()
        kept = _active(current, now)[: max(0, keep_previous)]
        old_expiry = current.get("expires_at") if isinstance(current.get("expires_at"), dict) else {}
        expires_at = {}
        for secret in kept:
            until = now + previous_valid_for
            if fingerprint(secret) in old_expiry:
                until = min(until, _expiry(old_expiry[fingerprint(secret)]))
            expires_at[fingerprint(secret)] = until.astimezone(UTC).isoformat()
        value = {"secrets": [new, *kept], "expires_at": expires_at}
        self._sm.put_secret_value(SecretId=name, SecretString=json.dumps(value))
        return new


class EdgeSecret:
    """The secret CloudFront adds to every request it forwards to the webhook route's origin (the
    `x-slotguard-edge` header: docs/decisions.md, "Per-tenant fairness"). A request without it did
    not pass the edge's per-org rate limit: it went to the origin's own URL.

    Both the secret's current and previous versions (AWSCURRENT, AWSPREVIOUS) are accepted, so a
    change of the value (docs/operations.md) never refuses what CloudFront sends while its new
    header rolls out. The values are read once and kept for `max_age_s` seconds; a header matching
    neither re-reads them at most every REFRESH_MIN_INTERVAL_S seconds, so junk costs no read each."""

    HEADER = "x-slotguard-edge"
    REFRESH_MIN_INTERVAL_S = 30.0
    STAGES = ("AWSCURRENT", "AWSPREVIOUS")

    def __init__(
        self,
        secret_id: str,
        max_age_s: int = 300,
        sm: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_id = secret_id
        self._max_age_s = max_age_s
        self._sm = sm or client("secretsmanager")
        self._clock = clock
        self._values: list[bytes] = []
        self._read_at = float("-inf")

    def _read(self, now: float) -> list[bytes]:
        values = []
        for stage in self.STAGES:
            try:
                answer = self._sm.get_secret_value(SecretId=self._secret_id, VersionStage=stage)
                value = answer["SecretString"]
            except ClientError as exc:
                if stage != "AWSCURRENT" and exc.response["Error"]["Code"] == "ResourceNotFoundException":
                    continue  # no previous version (never changed)
                raise SecretStoreUnavailable(str(exc)) from exc
            except Exception as exc:  # the endpoint unreachable, throttled, ...
                raise SecretStoreUnavailable(str(exc)) from exc
            if isinstance(value, str) and value:
                values.append(value.encode())
        if not values:
            raise SecretStoreUnavailable("the edge secret is empty")
        self._values, self._read_at = values, now
        return values

    def matches(self, presented: str | None) -> bool:
        """Whether `presented` is the edge's secret, current or previous (constant-time compares)."""
        if not presented:
            return False
        now = self._clock()
        values = self._values if now - self._read_at < self._max_age_s else self._read(now)
        if _any_equal(presented.encode(), values):
            return True
        if now - self._read_at < self.REFRESH_MIN_INTERVAL_S:
            return False
        return _any_equal(presented.encode(), self._read(now))


def _any_equal(presented: bytes, values: list[bytes]) -> bool:
    # Every value compared, whichever matches, so the time taken says nothing of which did
    return sum(hmac.compare_digest(presented, value) for value in values) > 0


def database_admin_url(
    secret_arn: str, sslmode: str = "require", sm: Any | None = None, require_auth: str | None = None
) -> str:
    """The RDS-generated master secret as a libpq URL (deploy-time migrations only).

    `require_auth` lists the authentication methods libpq may answer (e.g. "scram-sha-256,md5"):
    with `sslmode=require` the server's certificate is not verified, so a server asking for the
    password in clear text is refused instead of being sent the master password."""
    from psycopg.conninfo import make_conninfo

    value = json.loads((sm or client("secretsmanager")).get_secret_value(SecretId=secret_arn)["SecretString"])
    options = {"require_auth": require_auth} if require_auth else {}
    return make_conninfo(
        host=value["host"],
        port=int(value.get("port", 5432)),
        user=value["username"],
        password=value["password"],
        dbname=value.get("dbname", "slotguard"),
        sslmode=sslmode,
        **options,
    )
