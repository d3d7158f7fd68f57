"""The booking metrics (EMF through Powertools Metrics), named in one place."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools.metrics import MetricUnit

from slotguard.errors import Busy, DatabaseUnavailable, SlotConflict
from slotguard.observability import metrics

ATTEMPTED = "BookingAttempted"
CREATED = "BookingCreated"
CONFLICT = "BookingConflict"
BUSY = "BookingBusy"  # lock not granted within the bound (lock contention only)
DATABASE_UNAVAILABLE = "BookingDatabaseUnavailable"  # answered 503 database_unavailable
LATENCY = "BookingLatency"  # milliseconds, every attempt


@contextmanager
def booking() -> Iterator[None]:
    started = time.perf_counter()
    metrics.add_metric(name=ATTEMPTED, unit=MetricUnit.Count, value=1)
    try:
        yield
    except SlotConflict:
        metrics.add_metric(name=CONFLICT, unit=MetricUnit.Count, value=1)
        raise
    except DatabaseUnavailable:  # a Busy too (503, Retry-After), but not lock contention
        metrics.add_metric(name=DATABASE_UNAVAILABLE, unit=MetricUnit.Count, value=1)
        raise
    except Busy:
        metrics.add_metric(name=BUSY, unit=MetricUnit.Count, value=1)
        raise
    else:
        metrics.add_metric(name=CREATED, unit=MetricUnit.Count, value=1)
    finally:
        metrics.add_metric(
            name=LATENCY, unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
        )
