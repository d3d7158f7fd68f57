"""The one place that creates the logger, tracer and metrics (Powertools).

Service name comes from POWERTOOLS_SERVICE_NAME (set per function by the CDK app and the
local stack); the metrics namespace is the same for every function.

The tracer (the X-Ray SDK, which patches and so imports botocore's session, ≈150 ms of cold
start) is created on first use: only functions that call AWS services import it. The others
(booking, cleanup, dlq_reconciler: the database only) still get Lambda's own invocation trace
from active tracing. See docs/decisions.md.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

METRICS_NAMESPACE = "Slotguard"

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "slotguard")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)


class _SerializedEMFProvider(AmazonCloudWatchEMFProvider):
    """The EMF provider with adds and flushes serialized. Lambda runs one invocation per
    process, so this lock is never contended there; the local stack runs several function
    "containers" as threads of one process, where an add racing a flush would otherwise
    mutate the metric set while it is being serialized."""

    _lock = threading.RLock()

    def add_metric(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            super().add_metric(*args, **kwargs)

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
