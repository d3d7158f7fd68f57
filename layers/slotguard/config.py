"""Typed configuration: one model per function, read from the environment and validated
at cold start (a bad setting fails the container's init, not the first request)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, _Config):
                values[name] = field.annotation.from_env(env)
                continue
            key = (field.alias or name).upper()
            if key in env and env[key] != "":
                values[name] = env[key]
        return cls.model_validate(values)


class DatabaseSettings(_Config):
    """DATABASE_URL (local, tests) or host/port/name/user with password or IAM auth (RDS Proxy)."""

    database_url: str | None = None
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "slotguard"
    db_user: str = "slotguard_app"
    db_auth: Literal["password", "iam"] = "password"
    db_password: str | None = Field(default=None, repr=False)
    db_sslmode: Literal["disable", "prefer", "require", "verify-full"] = "prefer"
    # Trust anchors for verify-full: a file (deployed: the Amazon Trust Services roots the layer
    # ships, which RDS Proxy's certificates chain to; "system" finds no roots with
    # psycopg-binary's bundled OpenSSL on Lambda). An IAM token is a credential: verify whom it goes to.
    db_sslrootcert: str | None = None
    db_connect_timeout_s: int = Field(default=5, ge=1, le=60)
    # A connection idle longer than this is replaced before reuse: below RDS Proxy's idle client
    # timeout (30 min), after which the proxy has closed its side.
    db_max_idle_s: int = Field(default=300, ge=1, le=1800)
    aws_region: str = "us-east-1"
    # Whether db_user replaces the user named in DATABASE_URL (see RetentionDatabaseSettings).
    login_role_overrides_url: ClassVar[bool] = False

    @model_validator(mode="after")
    def _one_way_in(self) -> Self:
        if self.database_url is None and self.db_host is None:
            raise ValueError("set DATABASE_URL or DB_HOST")
        if self.db_auth == "iam" and self.db_host is None:
            raise ValueError("DB_AUTH=iam needs DB_HOST (the RDS Proxy endpoint)")
        return self


class RetentionDatabaseSettings(DatabaseSettings):
    """The retention cleanup logs in as its own role, also when DATABASE_URL names another
    user (locally the URL is the application's; the password is shared there)."""

    db_user: str = "slotguard_retention"
    login_role_overrides_url: ClassVar[bool] = True


# The booking lock wait stays below the application role's statement_timeout (5 s, 0007).
MAX_LOCK_WAIT_MS = 4000


class BookingConfig(_Config):
    database: DatabaseSettings
    booking_lock_wait_ms: int = Field(default=3000, ge=1, le=MAX_LOCK_WAIT_MS)


# The bound on the receivers' secret cache: the longest a revoked webhook secret stays accepted.
MAX_SECRET_CACHE_S = 300


class ReceiverConfig(_Config):
    webhook_queue_url: str
    webhook_secret_prefix: str = "slotguard/webhooks/"  # noqa: S105 - a name prefix, not a secret
    # How long a receiver container reuses an org's secrets: a revoked secret (rotate-webhook-secret
    # --revoke-previous, --keep-previous 0) is refused within this long; an expired one at once.
    webhook_secret_cache_s: int = Field(default=60, ge=0, le=MAX_SECRET_CACHE_S)
    # An org id without a secret is not asked for again for this long (junk traffic); an org
    # created meanwhile is accepted after at most this delay.
    webhook_unknown_org_cache_s: int = Field(default=60, ge=0, le=3600)
    webhook_max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=1024 * 1024)
    # In AWS, the Secrets Manager secret CloudFront sends in the x-slotguard-edge header: a request
    # without it is refused (401, reason not_via_edge). Unset (the local stack): no edge, no check.
    webhook_edge_secret_arn: str | None = Field(default=None, min_length=1)


class RetryPolicy(_Config):
    """Capped exponential backoff with jitter; also sizes the SQS redrive (maxReceiveCount)."""

    webhook_max_attempts: int = Field(default=5, ge=1, le=50)
    webhook_backoff_base_s: int = Field(default=10, ge=0, le=3600)
    webhook_backoff_cap_s: int = Field(default=900, ge=0, le=43200)


class ProcessorConfig(_Config):
    database: DatabaseSettings
    retry: RetryPolicy
    webhook_queue_url: str
    # A claim older than this is taken to belong to a dead worker; >= the queue's visibility timeout.
    webhook_claim_stale_after_s: int = Field(default=180, ge=1)
    booking_lock_wait_ms: int = Field(default=3000, ge=1, le=MAX_LOCK_WAIT_MS)
    # Beyond the lock wait, the time one record may need (its effect's statement, the completion
    # or failure, SQS's visibility call): a record is only started while the invocation's
    # remaining time covers booking_lock_wait_ms + this; the rest of the batch is handed back.
    webhook_statement_reserve_ms: int = Field(default=1000, ge=0, le=30_000)

    @property
    def record_budget_ms(self) -> int:
        return self.booking_lock_wait_ms + self.webhook_statement_reserve_ms


class ReconcilerConfig(_Config):
    database: DatabaseSettings
    retry: RetryPolicy


class CleanupConfig(_Config):
    database: RetentionDatabaseSettings
    # The floors are purge_expired()'s own (0007): below them the database refuses.
    retention_completed_days: float = Field(default=7, ge=1)
    retention_failed_days: float = Field(default=30, ge=7)
    retention_idempotency_hours: float = Field(default=24, ge=24)
    cleanup_batch_size: int = Field(default=1000, ge=1, le=50_000)


class MetricsConfig(_Config):
    database: DatabaseSettings
    retry: RetryPolicy
    webhook_queue_url: str
    webhook_dlq_url: str
    # Where the processor's event source mapping state comes from:
    # "lambda:<mapping uuid>" (AWS Lambda API) or "file:<path>" (the local stack's poller).
    worker_state_source: str = Field(pattern=r"^(lambda|file):.+$")
