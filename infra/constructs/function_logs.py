"""Function logs: every Lambda function of the stack writes to a log group with the stage's
retention, the CDK's own helper functions included (the LogRetention function, the VPC's
default-security-group restriction). Lambda would otherwise create `/aws/lambda/<name>` on first
use, kept forever.

A helper function is pointed at a log group made here (its LoggingConfig): creating
`/aws/lambda/<its generated name>` instead would need the function's name before the function (a
cycle), and would race the function's first log line. Made last in the stack, after every
construct that brings a helper function."""

from __future__ import annotations

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import StageConfig


class FunctionLogs(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        for node in Stack.of(self).node.find_all():
            if not (CfnResource.is_cfn_resource(node) and node.cfn_resource_type == "AWS::Lambda::Function"):
                continue
            if isinstance(node, lambda_.CfnFunction) and _names_a_log_group(node):
                continue  # a lambda.Function given log_group= (ours, the migrations' provider)
            group = logs.LogGroup(
                self,
                node.node.path.replace("/", "-"),
                retention=config.log_retention,
                removal_policy=config.removal_policy,
            )
            node.add_property_override("LoggingConfig.LogGroup", group.log_group_name)


def _names_a_log_group(function: lambda_.CfnFunction) -> bool:
    config = function.logging_config
    return config is not None and bool(getattr(config, "log_group", None))
