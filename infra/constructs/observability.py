"""Observability: the dashboard of the key numbers and the alarms, notifying an SNS topic."""

from __future__ import annotations

from dataclasses import dataclass
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
ONE_MINUTE = Duration.minutes(1)
ONE_HOUR = Duration.hours(1)
# A few 503s (lock busy, a database blip answered database_unavailable) are expected and have
# their own alarms; five 5xx in five minutes is something to look at.
API_5XX_THRESHOLD = 5
# Webhooks refused with reason not_via_edge in 5 minutes: CloudFront's header and the receivers' secret
# out of step refuses every webhook; a few probes of the origin's URL are not worth a page.
NOT_VIA_EDGE_THRESHOLD = 10
# A rate (success, busy, 401s) is not judged on fewer events than this in its period: one failure in
# three deliveries at night is not a 66 % success rate (docs/operations.md).
MIN_SAMPLES = 20
# The four numbers the system promises (README, docs/operations.md).
SUCCESS_RATE_MIN_PERCENT = 99
DEAD_LETTERS_MAX = 10  # webhooks given up in an hour
BOOKING_TIME_MAX_MS = 200  # average
BUSY_RATE_MAX_PERCENT = 1
# The queue's oldest message: the metrics API calls the queue unhealthy from this age on too.
QUEUE_AGE_ALARM_S = 900
# Memory of the instance classes the stages use (GiB), for the freeable-memory threshold.
INSTANCE_MEMORY_GIB = {"t4g.micro": 1, "m7g.large": 8}
# The route whose latency is the booking time clients feel; per-route (detailed) metrics are on
# for it alone (infra/constructs/api.py).
BOOKING_ROUTE = "POST /appointments"
UNAUTHORIZED_METRIC = "ApiUnauthorized"  # the access logs' metric filter (infra/constructs/api.py)


@dataclass(frozen=True)
class DatabaseWatch:
    """What the database alarms watch: the instance (by identifier) and the proxy (by name)."""

    instance_identifier: str
    proxy_name: str


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
        database: DatabaseWatch,
        webhook_api: apigw.IHttpApi | None = None,
    ) -> None:
        """`webhook_api`: the webhook route's origin API behind the edge (infra/constructs/edge.py),
        where a stage has one."""
        super().__init__(scope, construct_id)
        ns = names.metrics_namespace

        def app_metric(
            name: str, service: str | None, statistic: str = "Sum", period: Duration = FIVE_MINUTES
        ) -> cw.Metric:
            return cw.Metric(
                namespace=ns,
                metric_name=name,
                dimensions_map={"service": service} if service else None,
                statistic=statistic,
                period=period,
            )

        def aws_metric(
            namespace: str, name: str, dimensions: dict[str, str], statistic: str, period: Duration
        ) -> cw.Metric:
            return cw.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map=dimensions,
                statistic=statistic,
                period=period,
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
        self.alarms: list[cw.Alarm] = []

        # -- the four numbers, each watched the way it is stated (docs/operations.md) ---------------
        delivered = "FILL(p, 0) + FILL(dp, 0) + FILL(dr, 0)"
        success_rate = cw.MathExpression(
            expression=f"IF({delivered} >= {MIN_SAMPLES}, 100 * FILL(p, 0) / ({delivered}), 100)",
            using_metrics={
                "p": app_metric(webhook_metrics.PROCESSED, "webhook_processor"),
                "dp": app_metric(webhook_metrics.DEAD_LETTERED, "webhook_processor"),
                "dr": app_metric(webhook_metrics.DEAD_LETTERED, "dlq_reconciler"),
            },
            label="webhook success rate (%)",
            period=FIVE_MINUTES,
        )
        self._alarm(
            "SuccessRate",
            success_rate,
            SUCCESS_RATE_MIN_PERCENT,
            cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            f"webhook success rate below {SUCCESS_RATE_MIN_PERCENT} % "
            f"(2 of 3 five-minute periods with at least {MIN_SAMPLES} deliveries)",
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )
        dead_letters = cw.MathExpression(
            expression="FILL(dp, 0) + FILL(dr, 0)",
            using_metrics={
                "dp": app_metric(webhook_metrics.DEAD_LETTERED, "webhook_processor", period=ONE_HOUR),
                "dr": app_metric(webhook_metrics.DEAD_LETTERED, "dlq_reconciler", period=ONE_HOUR),
            },
            label="webhooks dead-lettered",
            period=ONE_HOUR,
        )
        self._alarm(
            "DeadLetters",
            dead_letters,
            DEAD_LETTERS_MAX,
            cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            f"{DEAD_LETTERS_MAX} or more webhooks dead-lettered within an hour (given up or invalid)",
        )
        booking_time = aws_metric(
            "AWS/ApiGateway",
            "Latency",
            {"ApiId": http_api.api_id, "Stage": "$default", "Route": BOOKING_ROUTE},
            "Average",
            FIVE_MINUTES,
        ).with_(label="as clients wait (API Gateway)")
        handler_time = app_metric(booking_metrics.LATENCY, "booking", "Average").with_(label="in the handler")
        self._alarm(
            "BookingLatency",
            booking_time,
            BOOKING_TIME_MAX_MS,
            cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            f"average booking time above {BOOKING_TIME_MAX_MS} ms as clients wait (API Gateway, "
            "POST /appointments), for 15 minutes",
            evaluation_periods=3,
            datapoints_to_alarm=3,
        )
        self._alarm(
            "BookingHandlerLatency",
            handler_time,
            BOOKING_TIME_MAX_MS,
            cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            f"average booking time above {BOOKING_TIME_MAX_MS} ms in the booking handler, for 15 minutes",
            evaluation_periods=3,
            datapoints_to_alarm=3,
        )
        busy_rate = cw.MathExpression(
            expression=f"IF(a >= {MIN_SAMPLES}, 100 * FILL(b, 0) / a, 0)",
            using_metrics={
                "a": app_metric(booking_metrics.ATTEMPTED, "booking"),
                "b": app_metric(booking_metrics.BUSY, "booking"),
            },
            label="bookings refused for lock contention (%)",
            period=FIVE_MINUTES,
        )
        self._alarm(
            "BusyRate",
            busy_rate,
            BUSY_RATE_MAX_PERCENT,
            cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            f"more than {BUSY_RATE_MAX_PERCENT} % of bookings refused for lock contention (2 of 3 "
            f"five-minute periods with at least {MIN_SAMPLES} bookings)",
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )

        # -- what a KPI cannot see -----------------------------------------------------------------
        self._alarm(
            "DatabaseUnavailable",
            app_metric(booking_metrics.DATABASE_UNAVAILABLE, "booking", period=ONE_MINUTE),
            1,
            cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            "bookings answered 503 database_unavailable in 2 of the last 3 minutes",
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )
        queue_age = queue.metric_approximate_age_of_oldest_message(period=ONE_MINUTE, statistic="Maximum")
        self._alarm(
            "QueueOldestMessage",
            queue_age,
            QUEUE_AGE_ALARM_S,
            cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            f"a webhook has waited {QUEUE_AGE_ALARM_S // 60} minutes or more in the queue "
            "(processor stopped, throttled, or backing off from the database)",
            evaluation_periods=3,
            datapoints_to_alarm=3,
        )
        dlq_age = dlq.metric_approximate_age_of_oldest_message(period=ONE_MINUTE, statistic="Maximum")
        self._alarm(
            "ReconcilerStuck",
            dlq_age,
            QUEUE_AGE_ALARM_S,
            cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            "the dead-letter reconciler is stuck: a message has waited 15 minutes or more in the SQS "
            "dead-letter queue it drains continuously",
            evaluation_periods=3,
            datapoints_to_alarm=3,
        )
        self._alarm(
            "ReconcilerUnparsable",
            app_metric(webhook_metrics.UNPARSABLE, "dlq_reconciler"),
            1,
            cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            "the dead-letter reconciler received a message it cannot parse (it stays on the DLQ)",
        )
        pinned = aws_metric(
            "AWS/RDS",
            "DatabaseConnectionsCurrentlySessionPinned",
            {"ProxyName": database.proxy_name},
            "Maximum",
            ONE_MINUTE,
        )
        self._alarm(
            "PinnedConnections",
            pinned,
            0,
            cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            "RDS Proxy pinned a session: some client SQL uses SET, locks or prepares",
        )
        proxy_errors = cw.MathExpression(
            expression="FILL(a, 0) + FILL(d, 0)",
            using_metrics={
                "a": aws_metric(
                    "AWS/RDS",
                    "ClientConnectionsSetupFailedAuth",
                    {"ProxyName": database.proxy_name},
                    "Sum",
                    FIVE_MINUTES,
                ),
                "d": aws_metric(
                    "AWS/RDS",
                    "DatabaseConnectionsSetupFailed",
                    {"ProxyName": database.proxy_name},
                    "Sum",
                    FIVE_MINUTES,
                ),
            },
            label="proxy connection errors",
            period=FIVE_MINUTES,
        )
        self._alarm(
            "ProxyConnectionErrors",
            proxy_errors,
            5,
            cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            "RDS Proxy: 5 or more failed logins (IAM) or failed connections to the database in 5 minutes",
        )
        db = {"DBInstanceIdentifier": database.instance_identifier}
        instance_class = config.instance_type.to_string()
        self._alarm(
            "DatabaseCpu",
            aws_metric("AWS/RDS", "CPUUtilization", db, "Average", FIVE_MINUTES),
            80,
            cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            "database CPU above 80 % for 15 minutes",
            evaluation_periods=3,
            datapoints_to_alarm=3,
        )
        self._alarm(
            "DatabaseFreeStorage",
            aws_metric("AWS/RDS", "FreeStorageSpace", db, "Minimum", FIVE_MINUTES),
            config.allocated_storage_gb * 1024**3 // 5,
            cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            f"database free storage below 20 % of the {config.allocated_storage_gb} GiB allocated",
            treat_missing_data=cw.TreatMissingData.IGNORE,
        )
        self._alarm(
            "DatabaseFreeableMemory",
            aws_metric("AWS/RDS", "FreeableMemory", db, "Minimum", FIVE_MINUTES),
            INSTANCE_MEMORY_GIB[instance_class] * 1024**3 // 10,
            cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            f"database freeable memory below 10 % of the {instance_class}'s for 15 minutes",
            evaluation_periods=3,
            datapoints_to_alarm=3,
        )
        if instance_class.startswith("t"):  # burstable: running out of CPU credits
            self._alarm(
                "DatabaseCpuCredits",
                aws_metric("AWS/RDS", "CPUCreditBalance", db, "Minimum", FIVE_MINUTES),
                30,
                cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                f"database CPU credit balance below 30 ({instance_class} bursts on credits)",
                evaluation_periods=3,
                datapoints_to_alarm=3,
            )
        unauthorized = cw.MathExpression(
            expression=f"IF(c >= {MIN_SAMPLES}, 100 * FILL(u, 0) / c, 0)",
            using_metrics={
                "u": app_metric(UNAUTHORIZED_METRIC, None),
                "c": aws_metric("AWS/ApiGateway", "Count", {"ApiId": http_api.api_id}, "Sum", FIVE_MINUTES),
            },
            label="401 answers of the JWT routes (%)",
            period=FIVE_MINUTES,
        )
        self._alarm(
            "Unauthorized",
            unauthorized,
            50,
            cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            "half or more of the API's requests refused 401 for 10 minutes (identity provider, issuer "
            "or audience misconfigured?)",
            evaluation_periods=2,
            datapoints_to_alarm=2,
        )
        # The resolver turns an exception into a 500 answer, so Lambda's Errors metric stays at 0:
        # the API's own 5xx count is what shows application errors (and 503s that are not busy).
        api_5xx = http_api.metric_server_error(period=FIVE_MINUTES, statistic="Sum")
        self._alarm(
            "Api5xx",
            api_5xx,
            API_5XX_THRESHOLD,
            cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            f"{API_5XX_THRESHOLD} or more HTTP API 5xx answers in 5 minutes",
        )
        if webhook_api is not None:
            # The receiver answers its failures (SQS or Secrets Manager down: 503) itself, so its
            # Lambda Errors stay at 0: the webhook origin API's 5xx count is what shows them.
            self._alarm(
                "WebhookApi5xx",
                webhook_api.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
                API_5XX_THRESHOLD,
                cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                f"{API_5XX_THRESHOLD} or more webhook route 5xx answers in 5 minutes (the queue or the "
                "secret store failing: senders are told to retry)",
            )
            # Webhooks refused for not coming through the edge: CloudFront sending a header value the
            # receivers do not know (a changed edge secret not deployed, or deployed out of order:
            # every webhook refused), or someone posting to the origin's own URL.
            self._alarm(
                "WebhooksNotViaEdge",
                cw.Metric(
                    namespace=ns,
                    metric_name=webhook_metrics.REJECTED,
                    dimensions_map={"service": "webhook_receiver", "reason": "not_via_edge"},
                    statistic="Sum",
                    period=FIVE_MINUTES,
                ),
                NOT_VIA_EDGE_THRESHOLD,
                cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                f"{NOT_VIA_EDGE_THRESHOLD} or more webhooks refused in 5 minutes for not coming through "
                "CloudFront (the edge secret out of step, or the origin URL found)",
            )
        for name, fn in functions.items():
            self._alarm(
                f"Errors-{name}",
                fn.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                1,
                cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                f"{name} function errors",
            )
            self._alarm(
                f"Throttles-{name}",
                fn.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
                1,
                cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                f"{name} function throttled (its reserved concurrency or the account's is used up)",
            )

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=names.dashboard)

        def threshold(value: float, label: str) -> list[cw.HorizontalAnnotation]:
            return [cw.HorizontalAnnotation(value=value, label=label, color=cw.Color.RED)]

        # The four promised numbers first, each with its threshold line.
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Webhook success rate (%)",
                left=[success_rate],
                left_annotations=threshold(SUCCESS_RATE_MIN_PERCENT, "at least"),
                width=6,
            ),
            cw.GraphWidget(
                title="Dead letters (webhooks given up, per hour)",
                left=[dead_letters],
                left_annotations=threshold(DEAD_LETTERS_MAX, "fewer than"),
                width=6,
            ),
            cw.GraphWidget(
                title="Booking time, average (ms)",
                left=[booking_time, handler_time],
                left_annotations=threshold(BOOKING_TIME_MAX_MS, "under"),
                width=6,
            ),
            cw.GraphWidget(
                title="Bookings refused for lock contention (%)",
                left=[busy_rate],
                left_annotations=threshold(BUSY_RATE_MAX_PERCENT, "under"),
                width=6,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Webhook queues: oldest message age (s)", left=[queue_age, dlq_age], width=8
            ),
            cw.GraphWidget(
                title="Function errors and throttles",
                left=[fn.metric_errors(period=FIVE_MINUTES) for fn in functions.values()],
                right=[fn.metric_throttles(period=FIVE_MINUTES) for fn in functions.values()],
                width=8,
            ),
            cw.GraphWidget(
                title="Database unavailable (bookings answered 503)",
                left=[app_metric(booking_metrics.DATABASE_UNAVAILABLE, "booking", period=ONE_MINUTE)],
                width=4,
            ),
            cw.GraphWidget(title="HTTP API 5xx, 401 rate", left=[api_5xx], right=[unauthorized], width=4),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Database CPU (%)",
                left=[aws_metric("AWS/RDS", "CPUUtilization", db, "Average", FIVE_MINUTES)],
                width=8,
            ),
            cw.GraphWidget(
                title="RDS Proxy: pinned sessions, connection errors",
                left=[pinned],
                right=[proxy_errors],
                width=8,
            ),
            cw.GraphWidget(
                title="Database free storage and memory (bytes)",
                left=[
                    aws_metric("AWS/RDS", "FreeStorageSpace", db, "Minimum", FIVE_MINUTES),
                    aws_metric("AWS/RDS", "FreeableMemory", db, "Minimum", FIVE_MINUTES),
                ],
                width=8,
            ),
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
        *,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int = 1,
        treat_missing_data: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
    ) -> cw.Alarm:
        """An alarm that notifies the topic when it fires and when it clears. Why each one is set as
        it is, and what the paged person does: docs/operations.md."""
        alarm = cw.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=treat_missing_data,
            alarm_description=description,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm
