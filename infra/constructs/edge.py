"""The webhook route's edge: per-tenant fairness on the one public, unauthenticated route.

An HTTP API throttles per route and stage, never per path parameter, and AWS WAF cannot be
attached to one. So in AWS the webhook route is served through CloudFront, whose AWS WAF web ACL
limits each org's path (`/webhooks/<org_id>`) and each sender (IP address) on its own: junk sent
to one org's path, or one sender retrying hard, is answered 429 at the edge, and the other orgs
keep the route's budget. Behind CloudFront the route has an origin API of its own (its own
throttle), and CloudFront adds a secret header the receiver checks, so a request sent to the
origin's own URL (skipping the edge's limits) is refused. docs/decisions.md, "Per-tenant fairness".

A CloudFront web ACL must be created in us-east-1 (WebhookEdgeAclStack), which also writes its ARN
to an SSM parameter there; the distribution, in the stage's own stack and Region, reads it back
with a custom resource made here (not CDK's crossRegionReferences: its reader function is added
after every construct ran, so FunctionLogs could not give it a log group with retention).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from aws_cdk import Duration, SecretValue, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_wafv2 as waf
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.api import logged_stage
from infra.nag import suppress
from infra.names import Names
from slotguard.aws.secrets import EdgeSecret
from slotguard.topology import EDGE_LIMITS, ROUTES, WEBHOOK_THROTTLE

EDGE_REGION = "us-east-1"  # where CloudFront's web ACLs live
WEBHOOK_PATH_PREFIX = "/webhooks/"
# What a sender over a limit is told (WAF answers it; the receiver never sees the request)
RATE_LIMITED_RETRY_AFTER_S = 60


def _starts_with(prefix: str) -> waf.CfnWebACL.StatementProperty:
    return waf.CfnWebACL.StatementProperty(
        byte_match_statement=waf.CfnWebACL.ByteMatchStatementProperty(
            field_to_match=waf.CfnWebACL.FieldToMatchProperty(uri_path={}),
            positional_constraint="STARTS_WITH",
            search_string=prefix,
            text_transformations=[waf.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")],
        )
    )


def _visibility(metric: str) -> waf.CfnWebACL.VisibilityConfigProperty:
    return waf.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
    )


def _too_many_requests() -> waf.CfnWebACL.RuleActionProperty:
    return waf.CfnWebACL.RuleActionProperty(
        block=waf.CfnWebACL.BlockActionProperty(
            custom_response=waf.CfnWebACL.CustomResponseProperty(
                response_code=429,
                response_headers=[
                    waf.CfnWebACL.CustomHTTPHeaderProperty(
                        name="retry-after", value=str(RATE_LIMITED_RETRY_AFTER_S)
                    )
                ],
            )
        )
    )


def _rate_rule(name: str, priority: int, metric: str, **statement: Any) -> waf.CfnWebACL.RuleProperty:
    """A rate-based rule answering 429 with Retry-After past its limit."""
    return waf.CfnWebACL.RuleProperty(
        name=name,
        priority=priority,
        action=_too_many_requests(),
        statement=waf.CfnWebACL.StatementProperty(
            rate_based_statement=waf.CfnWebACL.RateBasedStatementProperty(**statement)
        ),
        visibility_config=_visibility(metric),
    )


class WebhookEdgeAclStack(Stack):
    """The web ACL in us-east-1: a rate limit per org path and one per sender on the webhook route,
    and nothing but the webhook route through this distribution."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        names = Names(config.stage)
        limits = EDGE_LIMITS["prod" if config.is_prod else "dev"]
        webhook_path = _starts_with(WEBHOOK_PATH_PREFIX)
        self.web_acl = waf.CfnWebACL(
            self,
            "WebAcl",
            name=f"{names.prefix}-webhook-edge",
            scope="CLOUDFRONT",
            default_action=waf.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(f"{names.prefix}-webhook-edge"),
            rules=[
                # Anything but the webhook route is not served here (404 from the edge)
                waf.CfnWebACL.RuleProperty(
                    name="OnlyTheWebhookRoute",
                    priority=0,
                    action=waf.CfnWebACL.RuleActionProperty(
                        block=waf.CfnWebACL.BlockActionProperty(
                            custom_response=waf.CfnWebACL.CustomResponseProperty(response_code=404)
                        )
                    ),
                    statement=waf.CfnWebACL.StatementProperty(
                        not_statement=waf.CfnWebACL.NotStatementProperty(statement=webhook_path)
                    ),
                    visibility_config=_visibility(f"{names.prefix}-not-webhook-route"),
                ),
                # One org's path: its own budget, whatever is sent to it (signed or junk)
                _rate_rule(
                    "PerOrgPath",
                    1,
                    f"{names.prefix}-per-org-path",
                    limit=limits.per_org_path,
                    evaluation_window_sec=limits.window_s,
                    aggregate_key_type="CUSTOM_KEYS",
                    custom_keys=[
                        waf.CfnWebACL.RateBasedStatementCustomKeyProperty(
                            uri_path=waf.CfnWebACL.RateLimitUriPathProperty(
                                text_transformations=[
                                    waf.CfnWebACL.TextTransformationProperty(priority=0, type="LOWERCASE")
                                ]
                            )
                        )
                    ],
                    scope_down_statement=webhook_path,
                ),
                # One sender spraying many paths (random org ids): its own budget too
                _rate_rule(
                    "PerSender",
                    2,
                    f"{names.prefix}-per-sender",
                    limit=limits.per_sender,
                    evaluation_window_sec=limits.window_s,
                    aggregate_key_type="IP",
                ),
            ],
        )
        ssm.StringParameter(
            self,
            "WebAclArn",
            parameter_name=web_acl_parameter(names),
            string_value=self.web_acl.attr_arn,
            description="The webhook edge's web ACL, read by the stage's stack in its own Region",
        )


def edge_revision(config: StageConfig) -> str:
    """Changes whenever the web ACL's definition may: this file, the limits, the stage."""
    limits = EDGE_LIMITS["prod" if config.is_prod else "dev"]
    digest = hashlib.sha256(Path(__file__).read_bytes() + repr((config.stage, limits)).encode())
    return digest.hexdigest()[:16]


def web_acl_parameter(names: Names) -> str:
    return f"/slotguard/{names.stage}/webhook-edge/web-acl-arn"


class EdgeAclReference(Construct):
    """The web ACL's ARN, read from its SSM parameter in us-east-1 at deploy time. Read again
    whenever the web ACL's definition changes (`revision`: a replaced web ACL has a new ARN)."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Names, revision: str) -> None:
        super().__init__(scope, construct_id)
        parameter = web_acl_parameter(names)
        # A new revision is a new physical id: CloudFormation updates the resource, which reads again
        call = cr.AwsSdkCall(
            service="SSM",
            action="getParameter",
            parameters={"Name": parameter},
            region=EDGE_REGION,
            physical_resource_id=cr.PhysicalResourceId.of(f"{parameter}@{revision}"),
        )
        self.reader = cr.AwsCustomResource(
            self,
            "Reader",
            on_create=call,
            on_update=call,
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(
                resources=[
                    Stack.of(self).format_arn(
                        service="ssm",
                        region=EDGE_REGION,
                        resource="parameter",
                        resource_name=parameter.lstrip("/"),
                    )
                ]
            ),
            install_latest_aws_sdk=False,
        )
        self.arn = self.reader.get_response_field("Parameter.Value")
        # The custom resource's function: one per stack, named from AwsCustomResource's public uuid
        provider = Stack.of(self).node.find_child(
            "AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", "")
        )
        suppress(
            provider,
            [
                (
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaBasicExecutionRole]",
                    "AWS-maintained minimum for writing the function's logs (the reader of the web "
                    "ACL's ARN, run at deploy time only).",
                ),
                ("AwsSolutions-L1", "The CDK's own AwsCustomResource function: its runtime is the CDK's."),
            ],
        )


class WebhookEdge(Construct):
    """The webhook route's origin API (its own throttle and access logs), the secret CloudFront
    sends it, and the CloudFront distribution with the us-east-1 web ACL."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        names: Names,
        receiver: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        # The web ACL (WebhookEdgeAclStack, deployed first in us-east-1)
        web_acl = EdgeAclReference(self, "WebAcl", names=names, revision=edge_revision(config))
        [route] = [r for r in ROUTES if r.via_edge]
        self.secret = secretsmanager.Secret(
            self,
            "OriginSecret",
            description=f"slotguard ({config.stage}): the header CloudFront sends the webhook origin",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=48
            ),
            removal_policy=config.removal_policy,
        )
        suppress(
            self.secret,
            [
                (
                    "AwsSolutions-SMG4",
                    "Shared by CloudFront's origin header and the receiver: a rotation is a deploy "
                    "that updates both (docs/operations.md), not a Secrets Manager rotation, which "
                    "would leave CloudFront sending the old value.",
                )
            ],
        )
        self.origin_api = apigw.HttpApi(
            self, "OriginApi", api_name=f"{names.prefix}-webhook-origin", create_default_stage=False
        )
        logged_stage(self, config, self.origin_api, WEBHOOK_THROTTLE)
        added = self.origin_api.add_routes(
            path=route.path,
            methods=[apigw.HttpMethod(route.method)],
            integration=integrations.HttpLambdaIntegration(
                "receiver-integration",
                receiver,
                payload_format_version=apigw.PayloadFormatVersion.VERSION_2_0,
            ),
            authorizer=apigw.HttpNoneAuthorizer(),
        )
        for r in added:
            suppress(
                r,
                [
                    (
                        "AwsSolutions-APIG4",
                        "The webhook receiver authenticates each request by its Standard Webhooks HMAC "
                        "signature, and the edge's header, not a JWT.",
                    )
                ],
            )
        origin_domain = (
            f"{self.origin_api.api_id}.execute-api.{Stack.of(self).region}.{Stack.of(self).url_suffix}"
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"slotguard ({config.stage}): the webhook route, rate-limited per org",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.HttpOrigin(
                    origin_domain,
                    protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                    origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
                    read_timeout=Duration.seconds(30),
                    # CloudFront replaces a header of the same name a viewer sends
                    # The version named (edge_secret_version) or the current one: CloudFormation
                    # resolves the reference again only when the reference itself changes
                    custom_headers={
                        EdgeSecret.HEADER: SecretValue.secrets_manager(
                            self.secret.secret_arn, version_id=config.edge_secret_version
                        ).unsafe_unwrap()
                    },
                ),
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            ),
            web_acl_id=web_acl.arn,
            price_class=cloudfront.PriceClass.PRICE_CLASS_ALL,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            # IPv4 only: WAF counts each IPv6 address on its own, and one host may hold a /64 of them
            # (the per-sender limit would be a limit per address, not per sender)
            enable_ipv6=False,
        )
        suppress(
            self.distribution,
            [
                (
                    "AwsSolutions-CFR1",
                    "Webhook senders are anywhere; no geography is refused. The web ACL limits each "
                    "org path and each sender.",
                ),
                (
                    "AwsSolutions-CFR3",
                    "Every request reaches the origin API, whose access log records it; the web ACL's "
                    "sampled requests and per-rule metrics show what the edge refused.",
                ),
                (
                    "AwsSolutions-CFR4",
                    "The distribution's default *.cloudfront.net certificate: CloudFront then allows "
                    "TLSv1 at the viewer and it cannot be raised without a custom domain and "
                    "certificate (the stage's own domain, when it has one).",
                ),
            ],
        )

    @property
    def webhook_url(self) -> str:
        return f"https://{self.distribution.distribution_domain_name}{WEBHOOK_PATH_PREFIX}"
