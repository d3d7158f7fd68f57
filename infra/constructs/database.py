"""Database: RDS PostgreSQL in isolated subnets, reached by the functions only through RDS
Proxy with IAM authentication end to end and TLS required."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.network import Network
from infra.nag import suppress
from infra.names import DB_LOGIN_USERS, DB_NAME, Names

PROXY_BORROW_TIMEOUT_S = 4
MAX_CONNECTIONS_PERCENT = 90


class Database(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, network: Network, names: Names
    ) -> None:
        super().__init__(scope, construct_id)
        parameters = rds.ParameterGroup(
            self,
            "Parameters",
            engine=config.postgres_engine,
            parameters={
                "rds.force_ssl": "1",
                "log_min_duration_statement": "500",
                # Slow statements are logged without their bind values (notes, metadata, webhook
                # payloads are personal data), also when a statement fails.
                "log_parameter_max_length": "0",
                "log_parameter_max_length_on_error": "0",
            },
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=config.postgres_engine,
            instance_type=config.instance_type,
            vpc=network.vpc,
            vpc_subnets=network.data_subnets,
            credentials=rds.Credentials.from_generated_secret("slotguard_admin"),
            database_name=DB_NAME,
            parameter_group=parameters,
            storage_encrypted=True,
            storage_type=rds.StorageType.GP3,
            allocated_storage=config.allocated_storage_gb,
            max_allocated_storage=config.allocated_storage_gb * 4,
            multi_az=config.multi_az,
            backup_retention=Duration.days(config.backup_retention_days),
            deletion_protection=config.deletion_protection,
            removal_policy=config.removal_policy,
            iam_authentication=True,
            auto_minor_version_upgrade=False,  # the exact minor is pinned (infra/config.py)
            cloudwatch_logs_exports=["postgresql"],
            cloudwatch_logs_retention=config.log_retention,
            enable_performance_insights=False,
            monitoring_interval=Duration.seconds(60),
        )
        if config.removal_policy != RemovalPolicy.DESTROY:
            # A retained instance still stands in its subnets and security group: were they deleted
            # with the stack (a destroy), CloudFormation would fail on them (DependencyViolation) and
            # leave the stack DELETE_FAILED. So they, and the VPC that holds them, are retained with
            # it, under the same policy (deleted too when the deploy that created them fails).
            network.vpc.apply_removal_policy(config.removal_policy)
            for subnet in network.vpc.isolated_subnets:
                subnet.apply_removal_policy(config.removal_policy)
            for group in self.instance.connections.security_groups:
                group.apply_removal_policy(config.removal_policy)
        # The proxy's own role, passed in (not found afterwards by the construct's internal id): with
        # end-to-end IAM, the proxy itself logs in to PostgreSQL with IAM as each login user.
        self.proxy_role = iam.Role(
            self,
            "ProxyRole",
            assumed_by=iam.ServicePrincipal("rds.amazonaws.com"),
            description="RDS Proxy: logs in to PostgreSQL with IAM as the login users",
        )
        self.proxy = rds.DatabaseProxy(
            self,
            "Proxy",
            role=self.proxy_role,
            proxy_target=rds.ProxyTarget.from_instance(self.instance),
            vpc=network.vpc,
            vpc_subnets=network.data_subnets,
            db_proxy_name=names.proxy,
            default_auth_scheme=rds.DefaultAuthScheme.IAM_AUTH,
            iam_auth=True,
            require_tls=True,
            max_connections_percent=MAX_CONNECTIONS_PERCENT,
            idle_client_timeout=Duration.minutes(30),
            # Below every database-facing function's timeout (with a reconnect and a lock wait), so
            # a saturated pool is answered 503 database_unavailable, not a Lambda timeout.
            borrow_timeout=Duration.seconds(PROXY_BORROW_TIMEOUT_S),
        )
        self.instance.connections.allow_default_port_from(self.proxy, "RDS Proxy to PostgreSQL")
        self.proxy_role.add_to_policy(
            iam.PolicyStatement(
                actions=["rds-db:connect"],
                resources=[
                    Stack.of(self).format_arn(
                        service="rds-db",
                        resource="dbuser",
                        resource_name=f"{self.instance.instance_resource_id}/{user}",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                    for user in DB_LOGIN_USERS
                ],
            )
        )
        self.admin_secret = self.instance.secret
        assert self.admin_secret is not None
        # The master secret lives as long as the database it opens (prod retains both). `secret` is
        # the attachment; the generated secret itself is the instance's child "Secret".
        generated_secret = self.instance.node.find_child("Secret")
        assert isinstance(generated_secret, secretsmanager.Secret)
        generated_secret.apply_removal_policy(config.removal_policy)
        # Rotated by Secrets Manager's hosted rotation function, in the VPC, allowed to the instance.
        rotation_security_group = ec2.SecurityGroup(
            self, "RotationSecurityGroup", vpc=network.vpc, description="master secret rotation"
        )
        self.admin_secret.add_rotation_schedule(
            "Rotation",
            hosted_rotation=secretsmanager.HostedRotation.postgre_sql_single_user(
                vpc=network.vpc,
                vpc_subnets=network.function_subnets,
                security_groups=[rotation_security_group],
            ),
            automatically_after=Duration.days(30),
            # Not at creation: single-user rotation changes the password before it moves AWSCURRENT,
            # so a first rotation racing the migrations' login (which reads AWSCURRENT) could fail the
            # deploy. The first rotation comes 30 days later, like every other one.
            rotate_immediately_on_update=False,
        )
        self.instance.connections.allow_default_port_from(rotation_security_group, "master secret rotation")
        self._suppress_log_retention_findings()
        suppress(
            self.instance,
            [
                (
                    "AwsSolutions-RDS11",
                    "PostgreSQL's default port: the instance is only reachable from the proxy and "
                    "the migrations function inside the VPC, by security group.",
                ),
                ("AwsSolutions-RDS3", "Multi-AZ is on in prod; dev runs single-AZ to save cost."),
                ("AwsSolutions-RDS10", "Deletion protection is on in prod; dev stacks must be disposable."),
                (
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonRDSEnhancedMonitoringRole]",
                    "The AWS-maintained role policy for RDS enhanced monitoring.",
                ),
            ],
        )

    def _suppress_log_retention_findings(self) -> None:
        """RDS creates the exported `postgresql` log group itself; its retention is set by the CDK's
        LogRetention function (one per stack)."""
        stack = Stack.of(self)
        for child in stack.node.children:
            if child.node.id.startswith("LogRetention"):
                suppress(
                    child,
                    [
                        (
                            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                            "AWSLambdaBasicExecutionRole]",
                            "The CDK LogRetention function writes its own logs (AWS-maintained policy).",
                        ),
                        (
                            "AwsSolutions-IAM5[Resource::*]",
                            "The CDK LogRetention function sets the retention of a log group RDS creates "
                            "(logs:Put/DeleteRetentionPolicy on *, as the CDK grants it).",
                        ),
                    ],
                )
