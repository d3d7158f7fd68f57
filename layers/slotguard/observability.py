"""The one place that creates the logger, tracer and metrics (Powertools).

Service name comes from POWERTOOLS_SERVICE_NAME (set per function by the CDK app and the
local stack); the metrics namespace is the same for every function.

The tracer (the X-Ray SDK, which patches and so imports botocore's session, ≈150 ms of cold
start) is created on first use: only functions that call AWS services import it. The others
(booking, cleanup, dlq_reconciler: the database only) still get Lambda's own invocation trace
from active tracing. See docs/decisions.md.
"""

from __future__ import annotations

import functools
import json
import logging
import numbers
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.exceptions import MetricValueError
from aws_lambda_powertools.metrics.functions import (
    extract_cloudwatch_metric_resolution_value,
    extract_cloudwatch_metric_unit_value,
)
from aws_lambda_powertools.metrics.provider.cloudwatch_emf import cloudwatch
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.constants import (
    MAX_METRIC_NAME_LENGTH,
    MAX_METRICS,
    MIN_METRIC_NAME_LENGTH,
)
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.exceptions import MetricNameError

METRICS_NAMESPACE = "Slotguard"

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "slotguard")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)


class _SerializedEMFProvider(AmazonCloudWatchEMFProvider):
    """The EMF provider with adds and flushes serialized. Lambda runs one invocation per
    process, and so do the local stack's containers, so this lock is never contended there;
    tests run handlers in threads of one process (the in-process event source, a timed-out
    invocation still running beside its successor), where an add racing a flush would otherwise
    mutate the metric set while it is being serialized."""

    _lock = threading.RLock()

    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = 60) -> None:
        with self._lock:
            if cloudwatch.logger.isEnabledFor(logging.DEBUG):
                super().add_metric(name, unit, value, resolution)
                return
            # Powertools' own add_metric (3.37.0), less its debug line: that f-string formats the
            # metric set on every call, at any log level (≈10 µs a metric). Same checks, same set,
            # same flush at MAX_METRICS values (tests/test_openapi_and_emf.py compares the two).
            name = name.strip()
            if len(name) < MIN_METRIC_NAME_LENGTH or len(name) > MAX_METRIC_NAME_LENGTH:
                raise MetricNameError(
                    f"The metric name should be between {MIN_METRIC_NAME_LENGTH} and"
                    f" {MAX_METRIC_NAME_LENGTH} characters",
                )
            if not isinstance(value, numbers.Number):
                raise MetricValueError(f"{value} is not a valid number")
            unit = extract_cloudwatch_metric_unit_value(
                metric_units=self._metric_units,
                metric_valid_options=self._metric_unit_valid_options,
                unit=unit,
            )
            resolution = extract_cloudwatch_metric_resolution_value(
                metric_resolutions=self._metric_resolutions,
                resolution=resolution,
            )
            metric: dict[str, Any] = self.metric_set.get(name, defaultdict(list))
            metric["Unit"] = unit
            metric["StorageResolution"] = resolution
            metric["Value"].append(float(value))
            self.metric_set[name] = metric
            if len(self.metric_set) == MAX_METRICS or len(metric["Value"]) == MAX_METRICS:
                print(json.dumps(self.serialize_metric_set()))
                self.metric_set.clear()

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        with self._lock:
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)


if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

logger = Logger()
_tracer: Tracer | None = None


def __getattr__(name: str) -> Any:
    """`from slotguard.observability import tracer` creates the X-Ray tracer, once."""
    global _tracer
    if name == "tracer":
        if _tracer is None:
            from aws_lambda_powertools import Tracer

            _tracer = Tracer()
        return _tracer
    raise AttributeError(name)


metrics = Metrics(
    namespace=METRICS_NAMESPACE,
    provider=_SerializedEMFProvider(
        namespace=METRICS_NAMESPACE,
        service=os.environ["POWERTOOLS_SERVICE_NAME"],
        metric_set=Metrics._metrics,
        dimension_set=Metrics._dimensions,
        metadata_set=Metrics._metadata,
        default_dimensions=Metrics._default_dimensions,
    ),
)


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _request_id(event: Mapping[str, Any]) -> Any:
    """`requestContext.requestId` as JMESPath reads it: None wherever the path is not an object."""
    request_context = event.get("requestContext") if isinstance(event, Mapping) else None
    return request_context.get("requestId") if isinstance(request_context, Mapping) else None


def inject_http_api_context(handler: Handler) -> Handler:
    """`logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)`
    for an HTTP API function: the Lambda context's keys, and the request id as correlation id,
    set before anything is logged. Powertools finds that id with a JMESPath search on every
    invocation (≈4 µs); here it is read directly."""
    injected = logger.inject_lambda_context(handler)

    @functools.wraps(handler)
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        logger.set_correlation_id(_request_id(event))
        result: dict[str, Any] = injected(event, context)
        return result

    return lambda_handler
