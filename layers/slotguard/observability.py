"""The one place that creates the logger, tracer and metrics (Powertools).

Service name comes from POWERTOOLS_SERVICE_NAME (set per function by the CDK app and the
local stack); the metrics namespace is the same for every function.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

METRICS_NAMESPACE = "Slotguard"

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "slotguard")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE)

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=METRICS_NAMESPACE)
