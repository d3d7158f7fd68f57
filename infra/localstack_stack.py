"""The LocalStack stage (`-c stage=localstack`): what LocalStack's open-source runtime can host,
built from the same constructs as the dev and prod stacks: the webhook queue, its dead-letter queue
and redrive policy (WebhookQueues), the alarms, their topic and the dashboard (Observability), and
the cleanup schedule rule (cleanup_schedule). `make local AWS=localstack CDK=1` deploys it with
`cdklocal deploy` and runs the local stack on the deployed queues (README, Testing with LocalStack).

What the open-source runtime cannot host stays emulated by the local stack: the functions (Lambda
needs Docker there), the HTTP API, RDS and its proxy. The constructs that watch or invoke them get
them by name, as they are named in a deployed stage; the webhook signing secrets are created at run
time under the stage's prefix (an output), as in AWS.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, CfnOutput, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.observability import DatabaseWatch, Observability
from infra.constructs.schedule import cleanup_schedule
from infra.constructs.webhooks import WebhookQueues
from infra.names import Names

STAGE = "localstack"
# The functions of a deployed stage (infra/stack.py), watched by the alarms; none runs in LocalStack.
FUNCTIONS = (
    "booking",
    "metrics",
    "webhook_receiver",
    "console",
    "webhook_processor",
    "dlq_reconciler",
    "cleanup",
    "migrations",
)
# The HTTP API whose 5xx the Api5xx alarm counts: the local stack's front door stands in for it.
LOCAL_API_ID = "local-front-door"
LOCAL_DB_INSTANCE = "slotguard-localstack-database"


class SlotguardLocalStackStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        names = Names(config.stage)
        queues = WebhookQueues(self, "Webhooks", config=config, names=names)
        functions: dict[str, lambda_.IFunction] = {
            name: lambda_.Function.from_function_attributes(
                self,
                f"Function-{name}",
                function_arn=self.format_arn(
                    service="lambda",
                    resource="function",
                    resource_name=names.function(name),
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                ),
                # No function here to grant EventBridge an invoke on (no AWS::Lambda::Permission)
                same_environment=False,
                skip_permissions=True,
            )
            for name in FUNCTIONS
        }
        cleanup_schedule(self, functions["cleanup"])
        observability = Observability(
            self,
            "Observability",
            config=config,
            names=names,
            queue=queues.queue,
            dlq=queues.dlq,
            functions=functions,
            http_api=apigw.HttpApi.from_http_api_attributes(self, "Api", http_api_id=LOCAL_API_ID),
            # The database and its proxy, by the names they would have (the local stack's Postgres
            # stands in for both): their alarms are deployed, and stay without data here.
            database=DatabaseWatch(LOCAL_DB_INSTANCE, names.proxy),
            # The local stack's front door serves the webhook route too (no edge in front)
            webhook_api=apigw.HttpApi.from_http_api_attributes(self, "WebhookApi", http_api_id=LOCAL_API_ID),
        )
        CfnOutput(self, "WebhookQueueUrl", value=queues.queue.queue_url)
        CfnOutput(self, "WebhookDeadLetterQueueUrl", value=queues.dlq.queue_url)
        CfnOutput(self, "AlarmTopicArn", value=observability.topic.topic_arn)
        CfnOutput(self, "WebhookSecretPrefix", value=names.webhook_secret_prefix)
        CfnOutput(self, "DashboardName", value=names.dashboard)
