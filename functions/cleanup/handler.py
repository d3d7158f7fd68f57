"""Retention cleanup, invoked by an EventBridge schedule."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from slotguard.config import CleanupConfig
from slotguard.db.connection import Database
from slotguard.db.webhook_repository import WebhookRepository
from slotguard.observability import logger, metrics
from slotguard.services.cleanup import RetentionCleanup

config = CleanupConfig.from_env()
cleanup = RetentionCleanup(WebhookRepository(Database(config.database)), config)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = cleanup.run()
    logger.info("retention cleanup done", extra=report.model_dump())
    metrics.add_metric(
        name="CleanupRowsDeleted",
        unit=MetricUnit.Count,
        value=report.completed_deleted + report.failed_deleted + report.idempotency_keys_deleted,
    )
    return report.model_dump()
