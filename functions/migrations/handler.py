"""CloudFormation custom resource (CDK Provider framework): apply the migrations and give the
application role its IAM login on every deploy that changes them. Deleting does nothing:
the data outlives the stack's custom resource."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from slotguard.aws.secrets import database_admin_url
from slotguard.db.migrate import ensure_app_login, migrate
from slotguard.observability import logger

PHYSICAL_ID = "slotguard-schema"


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", PHYSICAL_ID)}
    url = database_admin_url(os.environ["DB_ADMIN_SECRET_ARN"], os.environ.get("DB_SSLMODE", "require"))
    applied = migrate(url)
    ensure_app_login(url, iam=True)
    logger.info("migrations applied", extra={"applied": applied})
    return {"PhysicalResourceId": PHYSICAL_ID, "Data": {"Applied": ",".join(map(str, applied)) or "none"}}
