"""The webhook metrics (EMF through Powertools Metrics), named in one place."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from slotguard.errors import PayloadTooLarge
from slotguard.observability import METRICS_NAMESPACE, metrics

if TYPE_CHECKING:  # the processor's module brings the database layer, which the receiver never loads
    from slotguard.services.webhook_processor import ProcessResult

RECEIVED = "WebhookReceived"
REJECTED = "WebhookRejected"  # dimension: reason
PROCESSED = "WebhookProcessed"  # dimension-free count of completed deliveries
FAILED = "WebhookFailed"  # attempts that will be retried
DEAD_LETTERED = "WebhookDeadLettered"  # service webhook_processor (gave up) or dlq_reconciler (redrive)
DUPLICATE = "WebhookDuplicateSkipped"
HANDED_BACK = "WebhookHandedBack"  # records the invocation had no time left for (no attempt spent)
UNPARSABLE = "WebhookUnparsable"  # a dead-letter queue message the reconciler cannot read
PROCESSING_TIME = "WebhookProcessingTime"  # milliseconds


def _count(name: str, dimension: tuple[str, str] | None = None) -> None:
    if dimension is None:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=METRICS_NAMESPACE) as metric:
        metric.add_dimension(name=dimension[0], value=dimension[1])


@contextmanager
def receiving() -> Iterator[None]:
    # Imported here: the receiver's module brings boto3 (SQS, Secrets Manager), which the
    # processor and the reconciler, importing this module, must not load at init for it.
    from slotguard.services.webhook_receiver import WebhookRejected

    try:
        yield
    except WebhookRejected as exc:
        _count(REJECTED, ("reason", exc.reason))
        raise
    except PayloadTooLarge:
        _count(REJECTED, ("reason", "too_large"))
        raise
    _count(RECEIVED)


@contextmanager
def processing() -> Iterator[Callable[[ProcessResult], ProcessResult]]:
    from slotguard.services.webhook_processor import HandedBack, RecordFailed  # loaded by its only callers

    started = time.perf_counter()

    def track(result: ProcessResult) -> ProcessResult:
        if result.status == "completed":
            _count(PROCESSED)
        elif result.status == "dead_letter":
            dead_lettered()
        elif result.status == "skipped":
            _count(DUPLICATE)
        return result

    try:
        yield track
    except HandedBack:
        _count(HANDED_BACK)
        raise
    except RecordFailed:
        _count(FAILED)
        raise
    finally:
        metrics.add_metric(
            name=PROCESSING_TIME, unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
        )


def dead_lettered() -> None:
    """Counted under the emitting function's service dimension, so alarms can add them up."""
    _count(DEAD_LETTERED)


def unparsable() -> None:
    """A dead-letter queue message without the identity attributes the reconciler records it by: it
    stays on the queue (retried until the DLQ's retention drops it), so it is counted for an alarm."""
    _count(UNPARSABLE)
