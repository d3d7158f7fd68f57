"""Migrations on deploy: a custom resource whose function runs the same migration runner as the
tests and the local stack, connecting to the instance (not the proxy) as its administrator,
and gives the application role rds_iam. It runs again whenever a migration file, the runner's
code or the instance (a replaced instance has a new resource id) changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import CustomResource, Stack
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.config import StageConfig
from infra.constructs.database import Database
from infra.constructs.functions import Functions
from infra.constructs.network import Network
from infra.layer_build import PACKAGE, ROOT
from infra.nag import suppress

# The SQL files' digest, as the handler computes it from the files it holds (so it recognises a
# rollback's older properties).
from slotguard.db.migrate import migrations_digest


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def migration_code_digest() -> str:
    """The code that applies them: the runner, the custom resource handler, what reads the secret."""
    return _digest(
        [
            PACKAGE / "db" / "migrate.py",
            PACKAGE / "aws" / "secrets.py",
            ROOT / "functions" / "migrations" / "handler.py",
        ]
    )


class Migrations(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Functions,
        database: Database,
        network: Network,
        config: StageConfig,
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
                # TLS without verifying the instance's certificate (the RDS CA bundle is not shipped),
                # so the master password is never given in clear text: SCRAM or MD5 only, which an
                # impostor learns nothing usable from (the generated password is long and random).
                "DB_SSLMODE": "require",
                "DB_REQUIRE_AUTH": "scram-sha-256,md5",
                "DB_CONNECT_TIMEOUT_S": "10",
                "DB_REPLACEMENT": config.database_replacement,
            },
        )
        database.admin_secret.grant_read(self.function)
        database.instance.connections.allow_default_port_from(self.function, "deploy-time migrations")
        provider = cr.Provider(self, "Provider", on_event_handler=self.function)
        self.resource = CustomResource(
            self,
            "Schema",
            service_token=provider.service_token,
            # Any of these changing is an Update, and an Update runs the migrations: a replaced
            # instance (new resource id, empty schema), new SQL files, or a new runner.
            properties={
                "DatabaseResourceId": database.instance.instance_resource_id,
                "Migrations": migrations_digest(),
                "RunnerCode": migration_code_digest(),
            },
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
