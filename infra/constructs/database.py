"""Database: RDS PostgreSQL in isolated subnets, reached by the functions only through RDS
Proxy with IAM authentication end to end and TLS required."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.network import Network
from infra.nag import suppress
from infra.names import APP_DB_USER, DB_NAME, Names


class Database(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, network: Network, names: Names
    ) -> None:
        super().__init__(scope, construct_id)
        parameters = rds.ParameterGroup(
            self,
            "Parameters",
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_18),
            parameters={"rds.force_ssl": "1", "log_min_duration_statement": "500"},
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_18),
            instance_type=config.instance_type,
            vpc=network.vpc,
            vpc_subnets=network.data_subnets,
            credentials=rds.Credentials.from_generated_secret("slotguard_admin"),
            database_name=DB_NAME,
            parameter_group=parameters,
            storage_encrypted=True,
            allocated_storage=config.allocated_storage_gb,
            max_allocated_storage=config.allocated_storage_gb * 4,
            multi_az=config.multi_az,
            backup_retention=Duration.days(config.backup_retention_days),
            deletion_protection=config.deletion_protection,
            removal_policy=config.removal_policy,
            iam_authentication=True,
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=["postgresql"],
            enable_performance_insights=False,
            monitoring_interval=Duration.seconds(60),
        )
        self.proxy = rds.DatabaseProxy(
            self,
            "Proxy",
            proxy_target=rds.ProxyTarget.from_instance(self.instance),
            vpc=network.vpc,
            vpc_subnets=network.data_subnets,
            db_proxy_name=names.proxy,
            default_auth_scheme=rds.DefaultAuthScheme.IAM_AUTH,
            iam_auth=True,
            require_tls=True,
            max_connections_percent=90,
            idle_client_timeout=Duration.minutes(30),
            borrow_timeout=Duration.seconds(30),
        )
        self.instance.connections.allow_default_port_from(self.proxy, "RDS Proxy to PostgreSQL")
        # End-to-end IAM: the proxy itself logs in to PostgreSQL with IAM as the application user.
        proxy_role = self.proxy.node.find_child("IAMRole")
        assert isinstance(proxy_role, iam.Role)
        proxy_role.add_to_policy(
            iam.PolicyStatement(
                actions=["rds-db:connect"],
                resources=[
                    Stack.of(self).format_arn(
                        service="rds-db",
                        resource="dbuser",
                        resource_name=f"{self.instance.instance_resource_id}/{APP_DB_USER}",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        self.admin_secret = self.instance.secret
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
                (
                    "AwsSolutions-SMG4",
                    "The master secret is used only by the deploy-time migrations; rotation needs a "
                    "hosted rotation Lambda and is the next step (see README, deploy).",
                ),
            ],
        )
