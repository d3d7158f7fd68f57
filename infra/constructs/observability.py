"""Observability: the dashboard of the key numbers and the alarms, notifying an SNS topic."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.names import Names
from slotguard.services import booking_metrics, webhook_metrics

FIVE_MINUTES = Duration.minutes(5)
# A few 503s (lock busy, a database blip answered database_unavailable) are expected and have
# their own busy-rate alarm; five 5xx in five minutes is something to look at.
API_5XX_THRESHOLD = 5


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        names: Names,
        queue: sqs.IQueue,
        dlq: sqs.IQueue,
        functions: dict[str, lambda_.IFunction],
        http_api: apigw.IHttpApi,
    ) -> None:
        super().__init__(scope, construct_id)
        ns = names.metrics_namespace

        def app_metric(name: str, service: str, statistic: str = "Sum") -> cw.Metric:
            return cw.Metric(
                namespace=ns,
                metric_name=name,
                dimensions_map={"service": service},
                statistic=statistic,
                period=FIVE_MINUTES,
            )

        self.topic = sns.Topic(
            self,
            "Alarms",
            display_name=f"{names.prefix} alarms",
            enforce_ssl=True,
            master_key=self._alarm_key(config),
        )
        # enforce_ssl gives the topic a resource policy of its own (a TLS-only Deny), which replaces
        # SNS's default policy: without an Allow, CloudWatch's alarm actions are refused
        # ("no resource-based policy allows the SNS:Publish action"). Alarms of this account only.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=self._alarm_source_conditions(),
            )
        )
        for email in config.alarm_emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        if config.alarm_https_endpoint:
            self.topic.add_subscription(subscriptions.UrlSubscription(config.alarm_https_endpoint))
        success_rate = cw.MathExpression(
            expression="IF(p + dp + dr > 0, 100 * p / (p + dp + dr), 100)",
            using_metrics={
                "p": app_metric(webhook_metrics.PROCESSED, "webhook_processor"),
                "dp": app_metric(webhook_metrics.DEAD_LETTERED, "webhook_processor"),
                "dr": app_metric(webhook_metrics.DEAD_LETTERED, "dlq_reconciler"),
            },
            label="webhook success rate (%)",
            period=FIVE_MINUTES,
        )
        busy_rate = cw.MathExpression(
            expression="IF(a > 0, 100 * b / a, 0)",
            using_metrics={
                "a": app_metric(booking_metrics.ATTEMPTED, "booking"),
                "b": app_metric(booking_metrics.BUSY, "booking"),
            },
            label="booking lock busy rate (%)",
            period=FIVE_MINUTES,
        )
        latency_p99 = app_metric(booking_metrics.LATENCY, "booking", "p99")
        dlq_size = dlq.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(1), statistic="Maximum"
        )
        queue_age = queue.metric_approximate_age_of_oldest_message(
            period=Duration.minutes(1), statistic="Maximum"
        )
        pinned = cw.Metric(
            namespace="AWS/RDS",
            metric_name="DatabaseConnectionsCurrentlySessionPinned",
            dimensions_map={"ProxyName": names.proxy},
            statistic="Maximum",
            period=Duration.minutes(1),
        )

        self.alarms = [
            self._alarm(
                "DeadLetters",
                dlq_size,
                10,
                cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                "10 or more webhooks in the dead-letter queue",
            ),
            self._alarm(
                "SuccessRate",
                success_rate,
                99,
                cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                "webhook success rate below 99 %",
            ),
            self._alarm(
                "BookingLatencyP99",
                latency_p99,
                200,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                "booking p99 latency above 200 ms",
            ),
            self._alarm(
                "BusyRate",
                busy_rate,
                1,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                "more than 1 % of bookings answered busy (lock contention)",
            ),
            self._alarm(
                "PinnedConnections",
                pinned,
                0,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                "RDS Proxy pinned a session: some client SQL uses SET, locks or prepares",
            ),
        ]
        # The resolver turns an exception into a 500 answer, so Lambda's Errors metric stays at 0:
        # the API's own 5xx count is what shows application errors (and 503s that are not busy).
        api_5xx = http_api.metric_server_error(period=FIVE_MINUTES, statistic="Sum")
        self.alarms.append(
            self._alarm(
                "Api5xx",
                api_5xx,
                API_5XX_THRESHOLD,
                cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                f"{API_5XX_THRESHOLD} or more HTTP API 5xx answers in 5 minutes",
            )
        )
        for name, fn in functions.items():
            self.alarms.append(
                self._alarm(
                    f"Errors-{name}",
                    fn.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                    1,
                    cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    f"{name} function errors",
                )
            )

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=names.dashboard)
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Webhook success rate (%)", left=[success_rate], width=6),
            cw.GraphWidget(title="Dead-letter queue size", left=[dlq_size], width=6),
            cw.GraphWidget(title="Booking latency p99 (ms)", left=[latency_p99], width=6),
            cw.GraphWidget(title="Booking lock busy rate (%)", left=[busy_rate], width=6),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Webhook queue: oldest message age (s)", left=[queue_age], width=8),
            cw.GraphWidget(
                title="Function errors",
                left=[fn.metric_errors(period=FIVE_MINUTES) for fn in functions.values()],
                width=8,
            ),
            cw.GraphWidget(title="RDS Proxy pinned connections", left=[pinned], width=4),
            cw.GraphWidget(title="HTTP API 5xx", left=[api_5xx], width=4),
        )
        self.dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24))

    def _alarm_key(self, config: StageConfig) -> kms.Key:
        """CloudWatch publishes alarm notifications to an encrypted topic only with a key whose
        policy lets it use the key; the AWS-managed alias/aws/sns key cannot be changed to allow
        that. This customer-managed key does, for alarms of this account only."""
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="slotguard alarm topic encryption (CloudWatch alarms may use it)",
            enable_key_rotation=True,
            removal_policy=config.removal_policy,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions=self._alarm_source_conditions(),
            )
        )
        return key

    def _alarm_source_conditions(self) -> dict[str, Any]:
        """The CloudWatch alarms of this account (and no other account's), as a policy condition."""
        stack = Stack.of(self)
        return {
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnLike": {
                "aws:SourceArn": stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name="*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            },
        }

    def _alarm(
        self,
        name: str,
        metric: cw.IMetric,
        threshold: float,
        comparison: cw.ComparisonOperator,
        description: str,
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        return alarm
