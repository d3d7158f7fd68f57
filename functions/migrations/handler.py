"""CloudFormation custom resource (CDK Provider framework): apply the migrations (the numbered
files, then the function files that changed: slotguard/db/migrate.py) and give the
application role its IAM login on every deploy that changes them, the instance (a replaced
instance has a new resource id) or the runner's code. Deleting does nothing:
the data outlives the stack's custom resource.

Two updates are not simply run:
- a rollback: CloudFormation sends the previous properties (and, as the old ones, the properties
  this function's own files match) while this function may already hold the new files.
  Migrations only go forward (each file is written to be compatible with the code before it), so
  that update is answered without touching the database, instead of failing the rollback
  (UPDATE_ROLLBACK_FAILED). Any other difference between the deploy's files and this function's
  fails the deploy rather than succeed without migrating.
- a replaced instance, where the stage keeps its data (prod): the stack moving from a database
  with our schema to an empty one is refused, so the deploy fails and rolls back to the old
  instance instead of succeeding on an empty database. Moving back to a database that holds the
  schema (that same rollback) is allowed. `-c allow_database_replacement=true` lets it through.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from slotguard.aws.secrets import database_admin_url
from slotguard.db.migrate import applied_version, ensure_app_login, migrations_digest, run_migrations
from slotguard.observability import logger

PHYSICAL_ID = "slotguard-schema"


class ReplacedDatabaseRefused(RuntimeError):
    pass


class MigrationFilesMismatch(RuntimeError):
    """The deploy's migration files are not the ones this function holds (and it is no rollback)."""


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    kind = event["RequestType"]
    physical_id = event.get("PhysicalResourceId", PHYSICAL_ID)
    if kind == "Delete":
        return {"PhysicalResourceId": physical_id}
    props = event.get("ResourceProperties", {})
    own = migrations_digest()
    if props.get("Migrations") != own:
        if kind == "Update" and event.get("OldResourceProperties", {}).get("Migrations") == own:
            # Rolling back from this function's files to older ones: the schema only goes forward.
            logger.warning("a rollback to older migration files: the schema stays as it is")
            return {"PhysicalResourceId": physical_id, "Data": {"Applied": "none"}}
        asked = str(props.get("Migrations"))[:12]
        raise MigrationFilesMismatch(
            f"this function holds migration files {own[:12]}, the deploy asks for {asked}"
        )
    url = database_admin_url(
        os.environ["DB_ADMIN_SECRET_ARN"],
        os.environ.get("DB_SSLMODE", "require"),
        require_auth=os.environ.get("DB_REQUIRE_AUTH") or None,
    )
    timeout_s = int(os.environ.get("DB_CONNECT_TIMEOUT_S", "10"))
    if kind == "Update" and os.environ.get("DB_REPLACEMENT") == "refuse":
        before = event.get("OldResourceProperties", {}).get("DatabaseResourceId")
        replaced = before != props.get("DatabaseResourceId")
        if replaced and applied_version(url, connect_timeout_s=timeout_s) is None:
            raise ReplacedDatabaseRefused(
                f"the database instance was replaced ({before} -> {props.get('DatabaseResourceId')}) and the "
                "new one is empty: refusing to move this stage's data-keeping stack onto it (the old "
                "instance is retained). Deploy with -c allow_database_replacement=true if this is meant."
            )
    run = run_migrations(url, connect_timeout_s=timeout_s)
    ensure_app_login(url, iam=True, connect_timeout_s=timeout_s)
    logger.info("migrations applied", extra={"applied": run.versions, "function_files": run.functions})
    return {
        "PhysicalResourceId": PHYSICAL_ID,
        "Data": {
            "Applied": ",".join(map(str, run.versions)) or "none",
            "FunctionFiles": ",".join(run.functions) or "none",
        },
    }
