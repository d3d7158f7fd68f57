"""The slotguard stack: a thin composition of one construct per capability."""

from __future__ import annotations

from aws_cdk import ArnFormat, CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.api import Api
from infra.constructs.database import Database
from infra.constructs.edge import WebhookEdge
from infra.constructs.function_logs import FunctionLogs
from infra.constructs.functions import Functions
from infra.constructs.migrations import Migrations
from infra.constructs.network import Network
from infra.constructs.observability import DatabaseWatch, Observability
from infra.constructs.schedule import cleanup_schedule
from infra.constructs.webhooks import WebhookQueues
from infra.nag import suppress
from infra.names import APP_DB_USER, DB_NAME, PROXY_CA_BUNDLE, RETENTION_DB_USER, Names
from slotguard.topology import API_TIMEOUT_S, CLEANUP_TIMEOUT_S, WEBHOOK_QUEUE

# Database-facing API functions: a reconnect (2 x connect timeout), the proxy's borrow wait
# (infra/constructs/database.py) and slotguard_app's statement_timeout (5 s, migration 0007; it
# bounds a booking's lock wait too) all end before the function does (tests/test_infra.py).
DB_CONNECT_TIMEOUT_S = 3
BOOKING_LOCK_WAIT_MS = 3000


class SlotguardStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        names = Names(config.stage)
        secret_prefix = names.webhook_secret_prefix
        network = Network(self, "Network", config=config)
        database = Database(self, "Database", config=config, network=network, names=names)
        queues = WebhookQueues(self, "Webhooks", config=config, names=names)
        functions = Functions(self, "Functions", config=config, names=names, network=network)

        db_env = {
            "DB_HOST": database.proxy.endpoint,
            "DB_PORT": "5432",
            "DB_NAME": DB_NAME,
            "DB_USER": APP_DB_USER,
            "DB_AUTH": "iam",
            # The proxy's certificate is verified against the Amazon Trust Services roots the layer
            # ships, so an IAM token is never handed to an impostor. Not "system": psycopg-binary's
            # bundled OpenSSL looks for system roots under /usr/lib/psycopg-openssl, which no Lambda
            # runtime has, so every connection would fail verification.
            "DB_SSLMODE": "verify-full",
            "DB_SSLROOTCERT": PROXY_CA_BUNDLE,
            "DB_CONNECT_TIMEOUT_S": str(DB_CONNECT_TIMEOUT_S),
        }
        lock_env = {"BOOKING_LOCK_WAIT_MS": str(BOOKING_LOCK_WAIT_MS)}
        retry_env = {
            "WEBHOOK_MAX_ATTEMPTS": str(WEBHOOK_QUEUE.max_attempts),
            "WEBHOOK_BACKOFF_BASE_S": str(WEBHOOK_QUEUE.backoff_base_s),
            "WEBHOOK_BACKOFF_CAP_S": str(WEBHOOK_QUEUE.backoff_cap_s),
        }

        booking = functions.create(
            "booking",
            in_vpc=True,
            timeout_s=API_TIMEOUT_S,
            reserved_concurrency=config.booking_concurrency,
            environment={**db_env, **lock_env},
        )
        receiver = functions.create(
            "webhook_receiver",
            in_vpc=False,
            environment={
                "WEBHOOK_QUEUE_URL": queues.queue.queue_url,
                "WEBHOOK_SECRET_PREFIX": secret_prefix,
            },
        )
        processor = functions.create(
            "webhook_processor",
            timeout_s=WEBHOOK_QUEUE.processor_timeout_s,
            in_vpc=True,
            environment={
                **db_env,
                **retry_env,
                **lock_env,
                "WEBHOOK_QUEUE_URL": queues.queue.queue_url,
                "WEBHOOK_CLAIM_STALE_AFTER_S": str(WEBHOOK_QUEUE.claim_stale_after_s),
            },
        )
        reconciler = functions.create(
            "dlq_reconciler",
            timeout_s=WEBHOOK_QUEUE.reconciler_timeout_s,
            in_vpc=True,
            environment={**db_env, **retry_env},
        )
        cleanup = functions.create(  # one run at a time (hourly schedule, retries)
            "cleanup",
            timeout_s=CLEANUP_TIMEOUT_S,
            in_vpc=True,
            reserved_concurrency=config.reserved_concurrency.cleanup,
            # Its own login: may purge (above the floors) and nothing else; the app may not purge.
            environment={**db_env, "DB_USER": RETENTION_DB_USER},
        )
        mapping = queues.attach_processor(processor)
        queues.attach_reconciler(reconciler)
        metrics = functions.create(
            "metrics",
            in_vpc=True,
            timeout_s=API_TIMEOUT_S,
            reserved_concurrency=config.metrics_concurrency,
            environment={
                **db_env,
                **retry_env,
                "WEBHOOK_QUEUE_URL": queues.queue.queue_url,
                "WEBHOOK_DLQ_URL": queues.dlq.queue_url,
                "WORKER_STATE_SOURCE": f"lambda:{mapping.event_source_mapping_id}",
            },
        )

        # The operations console: static files from its own bundle; no VPC, no data, no AWS call
        # (its role holds only the logs and X-Ray every function has). docs/decisions.md.
        console = functions.create("console", in_vpc=False, memory_mb=256)

        # Least privilege, function by function.
        for fn in (booking, processor, reconciler, cleanup, metrics):
            database.proxy.grant_connect(fn, RETENTION_DB_USER if fn is cleanup else APP_DB_USER)
            database.proxy.connections.allow_from(fn, ec2.Port.tcp(5432), f"{fn.node.id} to RDS Proxy")
        queues.queue.grant_send_messages(receiver)
        receiver.add_to_role_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"],
                resources=[
                    self.format_arn(
                        service="secretsmanager",
                        resource="secret",
                        resource_name=f"{secret_prefix}*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        queues.queue.grant_send_messages(metrics)  # the dead-letter redrive
        metrics.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sqs:GetQueueAttributes"], resources=[queues.queue.queue_arn, queues.dlq.queue_arn]
            )
        )
        metrics.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:GetEventSourceMapping"], resources=[mapping.event_source_mapping_arn]
            )
        )
        metrics.add_to_role_policy(
            iam.PolicyStatement(actions=["cloudwatch:GetMetricStatistics"], resources=["*"])
        )

        migrations = Migrations(
            self, "Migrations", functions=functions, database=database, network=network, config=config
        )
        for fn in (booking, processor, reconciler, cleanup, metrics):
            fn.node.add_dependency(migrations.resource)

        api = Api(
            self,
            "Api",
            config=config,
            names=names,
            functions={"booking": booking, "metrics": metrics, "console": console},
        )
        # The webhook route: CloudFront and AWS WAF (a rate limit per org path and per sender) in
        # front of an origin API of its own; the receiver refuses what skipped the edge.
        edge = WebhookEdge(self, "WebhookEdge", config=config, names=names, receiver=receiver)
        receiver.add_environment("WEBHOOK_EDGE_SECRET_ARN", edge.secret.secret_arn)
        edge.secret.grant_read(receiver)
        cleanup_schedule(self, cleanup)
        all_functions: dict[str, lambda_.IFunction] = {
            "booking": booking,
            "metrics": metrics,
            "webhook_receiver": receiver,
            "console": console,
            "webhook_processor": processor,
            "dlq_reconciler": reconciler,
            "cleanup": cleanup,
            "migrations": migrations.function,
        }
        observability = Observability(
            self,
            "Observability",
            config=config,
            names=names,
            queue=queues.queue,
            dlq=queues.dlq,
            functions=all_functions,
            http_api=api.http_api,
            database=DatabaseWatch(database.instance.instance_identifier, names.proxy),
            webhook_api=edge.origin_api,
        )

        FunctionLogs(self, "FunctionLogs", config=config)  # last: after every helper function

        CfnOutput(self, "ApiUrl", value=api.url)
        CfnOutput(self, "WebhookUrl", value=edge.webhook_url, description="POST <WebhookUrl><org_id>")
        CfnOutput(self, "WebhookQueueUrl", value=queues.queue.queue_url)
        CfnOutput(self, "WebhookDeadLetterQueueUrl", value=queues.dlq.queue_url)
        CfnOutput(self, "DatabaseProxyEndpoint", value=database.proxy.endpoint)
        CfnOutput(self, "AlarmTopicArn", value=observability.topic.topic_arn)
        CfnOutput(self, "WebhookSecretPrefix", value=secret_prefix)
        self._suppress_function_findings(all_functions, secret_prefix)

    def _suppress_function_findings(
        self, functions: dict[str, lambda_.IFunction], secret_prefix: str
    ) -> None:
        basic = "arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        vpc = "arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
        for name, fn in functions.items():
            rules = [
                (
                    "AwsSolutions-L1",
                    "The design pins Python 3.13 (the layer is built for cp313 aarch64); "
                    "moving to 3.14 is a deliberate, tested change.",
                ),
                (
                    f"AwsSolutions-IAM4[Policy::{basic}]",
                    "AWS-maintained minimum for writing the function's logs.",
                ),
                (
                    "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray PutTraceSegments/PutTelemetryRecords (and, for metrics, CloudWatch "
                    "GetMetricStatistics) support no resource-level permissions: AWS requires *.",
                ),
            ]
            if name not in ("webhook_receiver", "console"):
                rules.append(
                    (
                        f"AwsSolutions-IAM4[Policy::{vpc}]",
                        "AWS-maintained minimum for the network interfaces of a function in a VPC.",
                    )
                )
            elif name == "webhook_receiver":
                rules.append(
                    (
                        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:{self.region}:"
                        f"<AWS::AccountId>:secret:{secret_prefix}*]",
                        "Webhook signing secrets are per org, created at runtime under one name prefix; "
                        "the receiver may read only those (GetSecretValue).",
                    )
                )
            suppress(fn, rules)
