"""The retention cleanup's schedule: an EventBridge rule invoking the cleanup function (with retries)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from slotguard.topology import CLEANUP_SCHEDULE_MINUTES


def cleanup_schedule(scope: Construct, cleanup: lambda_.IFunction) -> events.Rule:
    """The rule at `scope`/CleanupSchedule (its logical ID is the same in every stack built from it)."""
    return events.Rule(
        scope,
        "CleanupSchedule",
        schedule=events.Schedule.rate(Duration.minutes(CLEANUP_SCHEDULE_MINUTES)),
        targets=[targets.LambdaFunction(cleanup, retry_attempts=2)],
        description="slotguard retention cleanup",
    )
