"""CloudWatch reads: the queue's ApproximateAgeOfOldestMessage (SQS publishes it there)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from slotguard.aws.clients import client


class QueueAgeMetric:
    def __init__(self, cloudwatch: Any | None = None) -> None:
        self._cw = cloudwatch or client("cloudwatch")

    def oldest_message_age_s(self, queue_name: str) -> float | None:
        """The latest datapoint of the last 10 minutes, or None when there is none."""
        now = datetime.now(UTC)
        try:
            answer = self._cw.get_metric_statistics(
                Namespace="AWS/SQS",
                MetricName="ApproximateAgeOfOldestMessage",
                Dimensions=[{"Name": "QueueName", "Value": queue_name}],
                StartTime=now - timedelta(minutes=10),
                EndTime=now,
                Period=60,
                Statistics=["Maximum"],
            )
        except Exception:
            return None
        points = sorted(answer.get("Datapoints", []), key=lambda p: p["Timestamp"])
        return float(points[-1]["Maximum"]) if points else None
