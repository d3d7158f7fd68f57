"""CloudWatch reads: the queue's ApproximateAgeOfOldestMessage (SQS publishes it there)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from slotguard.aws.clients import client, error_reason


class MetricUnreadable(Exception):
    """CloudWatch did not answer: `reason` is its error code, else the exception's type."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"CloudWatch could not be read ({reason})")
        self.reason = reason


class QueueAgeMetric:
    def __init__(self, cloudwatch: Any | None = None) -> None:
        self._cw = cloudwatch or client("cloudwatch")

    def oldest_message_age_s(self, queue_name: str) -> float | None:
        """The latest datapoint of the last 10 minutes, or None when there is none;
        MetricUnreadable when CloudWatch does not answer (not the same as no datapoint)."""
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
        except Exception as exc:
            raise MetricUnreadable(error_reason(exc)) from exc
        points = sorted(answer.get("Datapoints", []), key=lambda p: p["Timestamp"])
        return float(points[-1]["Maximum"]) if points else None


# The booking function's metrics (slotguard.services.booking_metrics), as CloudWatch holds them:
# Powertools' EMF records, dimension `service` = the function's name.
BOOKING_COUNTS = ("BookingAttempted", "BookingCreated", "BookingConflict", "BookingBusy")
BOOKING_LATENCY = "BookingLatency"


class BookingMetricSource:
    """Sums of the booking counts and the mean booking latency over a range, read from CloudWatch
    (GetMetricStatistics, one period spanning the range). They are the deployment's figures: the
    booking metrics carry no org dimension (one custom metric per org would cost per org)."""

    def __init__(self, namespace: str, cloudwatch: Any | None = None, service: str = "booking") -> None:
        self._cw = cloudwatch or client("cloudwatch")
        self._namespace = namespace
        self._dimensions = [{"Name": "service", "Value": service}]

    def _statistics(self, name: str, span: timedelta, statistics: list[str]) -> dict[str, float]:
        now = datetime.now(UTC)
        answer = self._cw.get_metric_statistics(
            Namespace=self._namespace,
            MetricName=name,
            Dimensions=self._dimensions,
            StartTime=now - span,
            EndTime=now,
            Period=int(span.total_seconds()),
            Statistics=statistics,
        )
        totals = dict.fromkeys(statistics, 0.0)
        for point in answer.get("Datapoints", []):
            for statistic in statistics:
                totals[statistic] += float(point.get(statistic, 0.0))
        return totals

    def read(self, span: timedelta) -> dict[str, float]:
        """{BookingAttempted: sum, …, BookingLatency.sum, BookingLatency.count}; raises when
        CloudWatch cannot be read."""
        figures = {name: self._statistics(name, span, ["Sum"])["Sum"] for name in BOOKING_COUNTS}
        latency = self._statistics(BOOKING_LATENCY, span, ["Sum", "SampleCount"])
        figures[f"{BOOKING_LATENCY}.sum"] = latency["Sum"]
        figures[f"{BOOKING_LATENCY}.count"] = latency["SampleCount"]
        return figures
