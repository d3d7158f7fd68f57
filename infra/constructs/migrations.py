"""Migrations on deploy: a custom resource whose function runs the same migration runner as the
tests and the local stack, connecting to the instance (not the proxy) as its administrator,
and gives the application role rds_iam. It runs again whenever a migration file changes."""

from __future__ import annotations

import hashlib

from aws_cdk import CustomResource, Stack
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.constructs.database import Database
from infra.constructs.functions import Functions
from infra.constructs.network import Network
from infra.layer_build import PACKAGE
from infra.nag import suppress


def migrations_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((PACKAGE / "migrations").glob("*.sql")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Migrations(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Functions,
        database: Database,
        network: Network,
    ) -> None:
        super().__init__(scope, construct_id)
        assert database.admin_secret is not None
        self.function = functions.create(
            "migrations",
            in_vpc=True,
            timeout_s=300,
            reserved_concurrency=1,  # one runner at a time (it also takes an advisory lock)
            environment={
                "DB_ADMIN_SECRET_ARN": database.admin_secret.secret_arn,
                "DB_SSLMODE": "require",
                "DB_CONNECT_TIMEOUT_S": "10",
            },
        )
        database.admin_secret.grant_read(self.function)
        database.instance.connections.allow_default_port_from(self.function, "deploy-time migrations")
        provider = cr.Provider(self, "Provider", on_event_handler=self.function)
        self.resource = CustomResource(
            self,
            "Schema",
            service_token=provider.service_token,
            properties={"migrations": migrations_digest()},
            resource_type="Custom::SlotguardSchema",
        )
        self.resource.node.add_dependency(database.instance)
        function_id = Stack.of(self).get_logical_id(self.function.node.default_child)
        suppress(
            provider,
            [
                (
                    "AwsSolutions-L1",
                    "The provider framework function's runtime is chosen and updated by the CDK.",
                ),
                (
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaBasicExecutionRole]",
                    "The CDK provider framework uses AWSLambdaBasicExecutionRole for its logs.",
                ),
                (
                    f"AwsSolutions-IAM5[Resource::<{function_id}.Arn>:*]",
                    "The CDK provider framework may invoke every version of the migrations function "
                    "(<arn>:*).",
                ),
            ],
        )
