"""GET /booking-metrics: the deployment's booking figures, read from CloudWatch (moto's server) as
the metrics function reads them, with the figures' arithmetic checked to the digit, and its
answer when CloudWatch cannot be read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from slotguard.errors import UpstreamUnavailable
from slotguard.services import booking_metrics as names
from slotguard.services.metrics import BOOKING_LATENCY_THRESHOLD_MS, BUSY_RATE_THRESHOLD, MetricsService
from slotguard_local.functions import load_function
from slotguard_local.postgres import free_port
from tests.conftest import ApiClient, log_records, new_org
from tests.webhook_support import Pipeline


@pytest.fixture
def namespace(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> str:
    """A namespace of this test's own, which the metrics function reads (as deployed: its
    POWERTOOLS_METRICS_NAMESPACE, the one the booking function writes to)."""
    value = f"slotguard-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", value)
    return value


def put(namespace: str, name: str, *values: float) -> None:
    now = datetime.now(UTC)
    boto3.client("cloudwatch").put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": "service", "Value": "booking"}],
                "Timestamp": now - timedelta(seconds=30 + i),
                "Value": value,
            }
            for i, value in enumerate(values)
        ],
    )


def test_the_figures_are_the_booking_services_counts_its_busy_rate_and_mean_time(namespace: str) -> None:
    # Given the booking function's metrics: 7 attempts, 5 created, 1 conflict, 1 refused busy, and
    # three booking times whose mean is 20.333... ms
    put(namespace, names.ATTEMPTED, 3, 4)
    put(namespace, names.CREATED, 5)
    put(namespace, names.CONFLICT, 1)
    put(namespace, names.BUSY, 1)
    put(namespace, names.LATENCY, 10.0, 30.0, 21.0)
    # When an org member asks for the last hour
    res = ApiClient(load_function("metrics"), new_org().member).get("/booking-metrics", query={"range": "1h"})
    # Then the answer has each count, the busy share of attempts to 4 places (1/7) and the mean
    # time to 2 (61/3), beside the alarms' thresholds
    assert res.status == 200, res.body
    assert res.body == {
        "range": "1h",
        "scope": "deployment",
        "attempted": 7,
        "created": 5,
        "conflicts": 1,
        "busy": 1,
        "busy_rate": 0.1429,
        "avg_booking_ms": 20.33,
        "thresholds": {"avg_booking_ms": 200, "busy_rate": 0.01},
    }
    assert (BOOKING_LATENCY_THRESHOLD_MS, BUSY_RATE_THRESHOLD) == (200, 0.01)


def test_with_no_booking_the_rate_is_zero_and_there_is_no_mean_time(namespace: str) -> None:
    # Given no booking metric in the namespace, When asked, Then zero counts, a busy rate of 0 and
    # no mean time (null, not 0: no booking was timed)
    res = ApiClient(load_function("metrics"), new_org().member).get(
        "/booking-metrics", query={"range": "24h"}
    )
    assert res.status == 200, res.body
    assert (res.body["attempted"], res.body["busy_rate"], res.body["avg_booking_ms"]) == (0, 0.0, None)


def test_cloudwatch_unreachable_is_503_retry_shortly_and_logged(
    namespace: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a metrics function whose CloudWatch endpoint refuses connections
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", f"http://127.0.0.1:{free_port()}")
    fn = load_function("metrics")
    # When the booking figures are asked for
    res = ApiClient(fn, new_org().member).get("/booking-metrics", query={"range": "1h"})
    # Then the caller is told to retry shortly (503, upstream_unavailable), and the failure is
    # logged with the error's type
    assert res.status == 503, res.body
    assert res.body["error"] == {
        "code": "upstream_unavailable",
        "message": "CloudWatch could not be read, retry shortly",
        "details": {},
    }
    assert "Retry-After" in res.headers
    [warning] = log_records(caplog, "booking metrics: CloudWatch failed")
    assert (warning.levelname, warning.error) == ("WARNING", "EndpointConnectionError")


def test_a_metrics_service_without_a_booking_source_says_so() -> None:
    # Given a metrics service built without a booking metric source (none is configured)
    service = MetricsService(None, None, None, None, None, 5)  # type: ignore[arg-type]
    # When asked for booking figures, Then it is unavailable, saying why
    with pytest.raises(UpstreamUnavailable) as refused:
        service.booking_metrics("1h")
    assert refused.value.message == "booking metrics are not configured here"
