"""CloudFormation custom resource (CDK Provider framework): apply the migrations and give the
application role its IAM login on every deploy that changes them, the instance (a replaced
instance has a new resource id) or the runner's code. Deleting does nothing:
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
    timeout_s = int(os.environ.get("DB_CONNECT_TIMEOUT_S", "10"))
    applied = migrate(url, connect_timeout_s=timeout_s)
    ensure_app_login(url, iam=True, connect_timeout_s=timeout_s)
    logger.info("migrations applied", extra={"applied": applied})
    return {"PhysicalResourceId": PHYSICAL_ID, "Data": {"Applied": ",".join(map(str, applied)) or "none"}}
