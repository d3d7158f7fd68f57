"""Per-stage settings, chosen by the `stage` context value (dev | prod | localstack)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Node

from slotguard.topology import RESERVED_CONCURRENCY, ReservedConcurrency

# PostgreSQL majors this stack may run behind RDS Proxy (end-to-end IAM), each pinned to an exact
# minor (auto minor upgrades off: a minor bump is a reviewed change here). 18 is the default; 17
# is the documented fallback (`-c postgres_major=17`), see docs/decisions.md.
POSTGRES_VERSIONS = {18: "18.3", 17: "17.9"}
DEFAULT_POSTGRES_MAJOR = 18


@dataclass(frozen=True)
class StageConfig:
    stage: str
    removal_policy: RemovalPolicy
    deletion_protection: bool
    multi_az: bool
    instance_type: ec2.InstanceType
    allocated_storage_gb: int
    backup_retention_days: int
    nat_gateways: int
    log_retention: logs.RetentionDays
    jwt_issuer: str
    jwt_audience: str
    # Reserved concurrency of the API's database-facing functions (slotguard.topology, which the
    # local stack reads too): with the queue consumers' maximum concurrency, all of them at once
    # must fit the proxy's connection budget (asserted per stage in tests/test_infra.py).
    booking_concurrency: int = RESERVED_CONCURRENCY["dev"].booking
    metrics_concurrency: int = RESERVED_CONCURRENCY["dev"].metrics
    postgres_major: int = DEFAULT_POSTGRES_MAJOR
    cors_origins: tuple[str, ...] = ()
    alarm_emails: tuple[str, ...] = ()
    alarm_https_endpoint: str | None = None
    # What the migrations do when the stack's instance was replaced by an empty one: "refuse" (a
    # stage that keeps its data fails the deploy and rolls back to the old instance) or "migrate".
    database_replacement: str = "migrate"
    # The version of the webhook edge's secret CloudFront sends (-c edge_secret_version=<VersionId>,
    # as put-secret-value answers it); None: the current one. Naming the version changes the
    # secret reference itself, which is what makes CloudFormation resolve it again on a deploy
    # (docs/operations.md, "Changing the edge's header secret").
    edge_secret_version: str | None = None

    @property
    def is_prod(self) -> bool:
        return self.stage == "prod"

    @property
    def reserved_concurrency(self) -> ReservedConcurrency:
        return RESERVED_CONCURRENCY["prod" if self.is_prod else "dev"]

    @property
    def postgres_engine(self) -> rds.IInstanceEngine:
        version = rds.PostgresEngineVersion.of(
            POSTGRES_VERSIONS[self.postgres_major], str(self.postgres_major)
        )
        return rds.DatabaseInstanceEngine.postgres(version=version)


def stages(node: Node) -> list[str]:
    """`-c stage=dev` (one stack, for deploy) or `-c stages=dev,prod` (both, for make synth)."""
    listed = node.try_get_context("stages")
    if listed:
        return [s.strip() for s in str(listed).split(",") if s.strip()]
    return [str(node.try_get_context("stage") or "dev")]


def _listed(node: Node, key: str) -> tuple[str, ...]:
    """A context value given as a comma-separated string (`-c key=a,b`) or a JSON list (cdk.json)."""
    value = node.try_get_context(key)
    if not value:
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


# `make synth` and CI synthesize without an identity provider: `-c synth_only=true` puts an issuer
# that can never validate a token (RFC 2606 .invalid) in the template, so what it produces is
# checkable but never a working API by accident.
SYNTH_ONLY_ISSUER = "https://synth-only.invalid/"
SYNTH_ONLY_AUDIENCE = "synth-only"
_PLACEHOLDER_DOMAINS = (
    "example.com",
    "example.net",
    "example.org",
    "example",
    "invalid",
    "test",
    "localhost",
)


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


def _is_placeholder(issuer: str) -> bool:
    host = (urlsplit(issuer).hostname or "").lower()
    return any(host == d or host.endswith("." + d) for d in _PLACEHOLDER_DOMAINS)


def jwt_settings(node: Node) -> tuple[str, str]:
    """The JWT authorizer's issuer and audience: real ones for a deployable stage, or the synth-only
    placeholders when asked for explicitly. A missing or placeholder issuer is refused: a plain
    `cdk deploy` would otherwise succeed and answer every route with 401."""
    issuer = str(node.try_get_context("jwt_issuer") or "").strip()
    audience = str(node.try_get_context("jwt_audience") or "").strip()
    if _truthy(node.try_get_context("synth_only")):
        return issuer or SYNTH_ONLY_ISSUER, audience or SYNTH_ONLY_AUDIENCE
    problem = None
    if not issuer or not audience:
        problem = "they are not set"
    elif urlsplit(issuer).scheme != "https" or not urlsplit(issuer).hostname:
        problem = f"jwt_issuer {issuer!r} is not an https URL"
    elif _is_placeholder(issuer):
        problem = f"jwt_issuer {issuer!r} is a documentation placeholder"
    if problem:
        raise ValueError(
            "a deployable stage needs your identity provider: set the context values jwt_issuer "
            "(the token issuer URL, https) and jwt_audience (the API's audience), e.g. "
            "`npx cdk deploy -c stage=dev -c jwt_issuer=https://<your-idp>/ -c jwt_audience=<aud>` "
            f"({problem}). To synthesize without one (checks, CI), pass -c synth_only=true."
        )
    return issuer, audience


# Where make synth and CI synthesize a deployable stage when neither `-c region=` nor the CDK CLI's
# CDK_DEFAULT_REGION names one (only with synth_only: a deploy always knows its Region).
SYNTH_ONLY_REGION = "eu-west-1"


def deploy_region(node: Node) -> str:
    """The Region a dev or prod stage deploys to: context `region`, else the CDK CLI's
    CDK_DEFAULT_REGION (the profile's). Explicit, because the webhook edge's web ACL lives in
    us-east-1 and the stage's stack refers to it across Regions (infra/constructs/edge.py)."""
    region = str(node.try_get_context("region") or os.environ.get("CDK_DEFAULT_REGION") or "").strip()
    if region:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", region):
            raise ValueError(f"context region must be an AWS Region such as eu-west-1, not {region!r}")
        return region
    if _truthy(node.try_get_context("synth_only")):
        return SYNTH_ONLY_REGION
    raise ValueError(
        "a deployable stage needs its Region: run the CDK CLI with a profile or AWS_REGION set, or "
        "pass -c region=<region> (the webhook edge's web ACL is made in us-east-1 and referred to "
        "from the stage's Region)."
    )


def _edge_secret_version(node: Node) -> str | None:
    value = str(node.try_get_context("edge_secret_version") or "").strip()
    if value and not re.fullmatch(r"[A-Za-z0-9-]{32,64}", value):
        raise ValueError(
            f"context edge_secret_version must be a Secrets Manager VersionId (as put-secret-value "
            f"answers it), not {value!r}"
        )
    return value or None


def stage_config(node: Node, stage: str | None = None) -> StageConfig:
    stage = stage or str(node.try_get_context("stage") or "dev")
    if stage not in ("dev", "prod", "localstack"):
        raise ValueError(f"context stage must be dev, prod or localstack, not {stage!r}")
    # The localstack stage (infra/localstack_stack.py) has dev's settings and no API: no authorizer.
    if stage == "localstack":
        issuer, audience = SYNTH_ONLY_ISSUER, SYNTH_ONLY_AUDIENCE
    else:
        issuer, audience = jwt_settings(node)
    prod = stage == "prod"
    major = str(node.try_get_context("postgres_major") or DEFAULT_POSTGRES_MAJOR)
    if not major.isdigit() or int(major) not in POSTGRES_VERSIONS:
        raise ValueError(
            f"context postgres_major must be one of {sorted(POSTGRES_VERSIONS)} (the majors checked "
            f"behind RDS Proxy with end-to-end IAM, see docs/decisions.md), not {major!r}"
        )
    alarm_emails = _listed(node, "alarm_emails")
    alarm_https_endpoint = str(node.try_get_context("alarm_https_endpoint") or "").strip() or None
    if (
        prod
        and not (alarm_emails or alarm_https_endpoint)
        and not _truthy(node.try_get_context("synth_only"))
    ):
        raise ValueError(
            "a deployable prod stage needs someone to page: set the context value alarm_emails "
            "(comma-separated addresses) or alarm_https_endpoint (PagerDuty, Opsgenie, a chat relay), "
            "e.g. `-c alarm_emails=oncall@your-domain` (without one, the alarms notify a topic nobody "
            "reads). To synthesize without one (checks, CI), pass -c synth_only=true."
        )
    return StageConfig(
        stage=stage,
        # Retained on update and delete, but deleted when the deploy that creates them fails
        # (CloudFormation's RetainExceptOnCreate): a failed first deploy leaves nothing behind.
        removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE if prod else RemovalPolicy.DESTROY,
        deletion_protection=prod,
        multi_az=prod,
        instance_type=ec2.InstanceType("m7g.large" if prod else "t4g.micro"),
        allocated_storage_gb=100 if prod else 20,
        backup_retention_days=14 if prod else 7,
        nat_gateways=2 if prod else 1,
        log_retention=logs.RetentionDays.THREE_MONTHS if prod else logs.RetentionDays.TWO_WEEKS,
        booking_concurrency=RESERVED_CONCURRENCY["prod" if prod else "dev"].booking,
        metrics_concurrency=RESERVED_CONCURRENCY["prod" if prod else "dev"].metrics,
        jwt_issuer=issuer,
        jwt_audience=audience,
        postgres_major=int(major),
        cors_origins=_listed(node, "cors_origins"),
        alarm_emails=alarm_emails,
        alarm_https_endpoint=alarm_https_endpoint,
        edge_secret_version=_edge_secret_version(node),
        database_replacement="refuse"
        if prod and str(node.try_get_context("allow_database_replacement")).lower() != "true"
        else "migrate",
    )
