"""Functions: one Lambda per folder under functions/, Python 3.13 on arm64, all sharing one
layer (the slotguard package and its dependencies, built without Docker), each with its own
role, log group, Powertools settings and X-Ray tracing."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.network import Network
from infra.layer_build import ROOT, built_layer
from infra.names import Names

# X-Ray active tracing per function (Lambda samples 1 request a second and 5 % of the rest; its rate
# cannot be configured: docs/cost.md). False: PassThrough, traced only when the caller was.
TRACING = {
    "booking": True,
    "metrics": True,
    # The busiest function (every webhook, junk included) does a signature check and one SQS send:
    # its latency and errors show in API Gateway's metrics and its own logs, and its traces were the
    # largest X-Ray line at load (docs/cost.md). Traced when a caller is.
    "webhook_receiver": False,
    "webhook_processor": True,
    "dlq_reconciler": True,
    "cleanup": True,
    "migrations": True,
    # Static files of the operations console: nothing to trace beyond what a caller already traces.
    "console": False,
}


class Functions(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, names: Names, network: Network
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._names = names
        self._network = network
        self.layer = lambda_.LayerVersion(
            self,
            "SlotguardLayer",
            # The built directory itself: its asset hash is the digest of the built contents.
            code=lambda_.Code.from_asset(str(built_layer())),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_13],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description="slotguard package and its dependencies (manylinux aarch64, CPython 3.13)",
        )

    def create(
        self,
        name: str,
        *,
        in_vpc: bool,
        timeout_s: int = 10,
        memory_mb: int = 512,
        reserved_concurrency: int | None = None,
        environment: dict[str, str] | None = None,
    ) -> lambda_.Function:
        """A function in the private subnets (`in_vpc`, to reach the database) or outside the VPC."""
        log_group = logs.LogGroup(  # generated name: a retained group must not block a new stack
            self,
            f"{name}-logs",
            retention=self._config.log_retention,
            removal_policy=self._config.removal_policy,
        )
        return lambda_.Function(
            self,
            name,
            function_name=self._names.function(name),
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.lambda_handler",
            code=lambda_.Code.from_asset(str(ROOT / "functions" / name)),
            layers=[self.layer],
            timeout=Duration.seconds(timeout_s),
            memory_size=memory_mb,
            reserved_concurrent_executions=reserved_concurrency,
            vpc=self._network.vpc if in_vpc else None,
            vpc_subnets=self._network.function_subnets if in_vpc else None,
            tracing=lambda_.Tracing.ACTIVE if TRACING[name] else lambda_.Tracing.PASS_THROUGH,
            log_group=log_group,
            environment={
                "POWERTOOLS_SERVICE_NAME": name,
                "POWERTOOLS_METRICS_NAMESPACE": self._names.metrics_namespace,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **(environment or {}),
            },
        )
