"""API: one HTTP API, the JWT authorizer (issuer and audience from context) on every route but
the console's files, throttling and access logs. Routes come from slotguard.topology, the same
table the local front door serves; the webhook route is the edge's (edge.py)."""

from __future__ import annotations

import jsii
from aws_cdk import Duration
from aws_cdk import aws_apigateway as rest
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.observability import BOOKING_ROUTE, UNAUTHORIZED_METRIC
from infra.nag import suppress
from infra.names import Names
from slotguard.topology import API_THROTTLE, ROUTES, WEBHOOK_THROTTLE

# One line per request. No requestTime: every CloudWatch Logs event has its own timestamp
# (Logs Insights' @timestamp), so it cost 47 bytes a request for nothing (docs/cost.md).
ACCESS_LOG_FORMAT = (
    '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
    '"routeKey":"$context.routeKey","status":"$context.status","latency":"$context.responseLatency",'
    '"integrationError":"$context.integrationErrorMessage","authorizerError":"$context.authorizer.error"}'
)


@jsii.implements(apigw.IAccessLogSettings)
class AccessLogs:
    def __init__(self, destination: apigw.IAccessLogDestination, format_: rest.AccessLogFormat) -> None:
        self._destination = destination
        self._format = format_

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> rest.AccessLogFormat:
        return self._format


# Why each route without the JWT authorizer has none (cdk-nag AwsSolutions-APIG4).
PUBLIC_ROUTE_REASONS = {
    "console": "The operations console's static files (page, script, styles, charting library): no "
    "data; the page calls the JWT-protected API with the token its user gives it.",
}


def logged_stage(
    scope: Construct, config: StageConfig, http_api: apigw.IHttpApi, throttle: dict[str, int]
) -> tuple[apigw.HttpStage, logs.LogGroup]:
    """The API's `$default` stage, auto-deployed, throttled, with one access-log line a request
    (its own log group, the stage's retention): the main API's and the webhook origin's."""
    access_logs = logs.LogGroup(
        scope, "AccessLogs", retention=config.log_retention, removal_policy=config.removal_policy
    )
    stage = apigw.HttpStage(
        scope,
        "DefaultStage",
        http_api=http_api,
        stage_name="$default",
        auto_deploy=True,
        throttle=apigw.ThrottleSettings(
            rate_limit=throttle["rate_limit"], burst_limit=throttle["burst_limit"]
        ),
        access_log_settings=AccessLogs(
            apigw.LogGroupLogDestination(access_logs), rest.AccessLogFormat.custom(ACCESS_LOG_FORMAT)
        ),
    )
    return stage, access_logs


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        names: Names,
        functions: dict[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        cors = (
            apigw.CorsPreflightOptions(
                allow_origins=list(config.cors_origins),
                # every method a route has (GET, POST, and PUT for calendar rules and the org policy)
                allow_methods=[apigw.CorsHttpMethod(m) for m in sorted({r.method for r in ROUTES})],
                allow_headers=["authorization", "content-type", "idempotency-key"],
                expose_headers=["retry-after", "idempotent-replayed"],
                max_age=Duration.hours(1),
            )
            if config.cors_origins
            else None  # no CORS unless origins are given (context cors_origins)
        )
        self.http_api = apigw.HttpApi(
            self, "HttpApi", api_name=names.api, create_default_stage=False, cors_preflight=cors
        )
        self.stage, access_logs = logged_stage(self, config, self.http_api, API_THROTTLE)
        stage_resource = self.stage.node.default_child
        assert isinstance(stage_resource, apigw.CfnStage)
        # Each public route (the webhook receiver's, the console's files) has its own budget
        route_settings: dict[str, object] = {
            route.route_key: {
                "ThrottlingRateLimit": WEBHOOK_THROTTLE["rate_limit"],
                "ThrottlingBurstLimit": WEBHOOK_THROTTLE["burst_limit"],
            }
            for route in ROUTES
            if not route.authorized and not route.via_edge
        }
        # Per-route (detailed) metrics for the booking route alone: its API Gateway Latency is the
        # booking time clients feel (the BookingLatency alarm); on every route they would cost
        # six custom metrics a route (docs/cost.md).
        route_settings[BOOKING_ROUTE] = {
            "ThrottlingRateLimit": API_THROTTLE["rate_limit"],
            "ThrottlingBurstLimit": API_THROTTLE["burst_limit"],
            "DetailedMetricsEnabled": True,
        }
        stage_resource.route_settings = route_settings
        # 401 answers of the JWT-authorized routes (the authorizer refusing tokens: a misconfigured
        # identity provider locks every client out), counted from the access logs for the
        # Unauthorized alarm. The webhook route (bad signatures: the receiver counts those) is on
        # the edge's origin API (infra/constructs/edge.py), the console's files answer no 401.
        access_logs.add_metric_filter(
            "Unauthorized",
            metric_namespace=names.metrics_namespace,
            metric_name=UNAUTHORIZED_METRIC,
            metric_value="1",
            filter_pattern=logs.FilterPattern.literal('{ $.status = "401" }'),
        )
        jwt = authorizers.HttpJwtAuthorizer(
            "Jwt",
            jwt_issuer=config.jwt_issuer,
            jwt_audience=[config.jwt_audience],
            identity_source=["$request.header.Authorization"],
        )
        integration = {
            name: integrations.HttpLambdaIntegration(
                f"{name}-integration", fn, payload_format_version=apigw.PayloadFormatVersion.VERSION_2_0
            )
            for name, fn in functions.items()
        }
        for route in ROUTES:
            if route.via_edge:  # on the edge's origin API (infra/constructs/edge.py)
                continue
            added = self.http_api.add_routes(
                path=route.path,
                methods=[apigw.HttpMethod(route.method)],
                integration=integration[route.function],
                authorizer=jwt if route.authorized else apigw.HttpNoneAuthorizer(),
            )
            if route.route_key in route_settings:
                for r in added:  # the stage's RouteSettings name this route: it must exist first
                    self.stage.node.add_dependency(r)
            if not route.authorized:
                for r in added:
                    suppress(r, [("AwsSolutions-APIG4", PUBLIC_ROUTE_REASONS[route.function])])

    @property
    def url(self) -> str:
        return self.stage.url
