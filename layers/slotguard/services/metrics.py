"""The webhook metrics API: queue health, delivery stats, failures, dead letters and their
redrive, processing-time percentiles. Everything is scoped to the caller's org; the queues' own
depths (one queue serves every org) are shown to admins only."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from slotguard.aws.cloudwatch import BookingMetricSource, MetricUnreadable, QueueAgeMetric
from slotguard.aws.sqs import (
    SEND_BATCH_MAX,
    OutgoingWebhook,
    QueueDepth,
    SendInterrupted,
    WebhookQueue,
    escape_for_sqs,
)
from slotguard.aws.workers import WorkerState, WorkerStateSource
from slotguard.db.connection import Database
from slotguard.db.webhook_repository import WebhookRepository
from slotguard.errors import NotFound, RedriveBacklog, UpstreamUnavailable
from slotguard.models import Actor, JobId
from slotguard.observability import logger

Range = Literal["1h", "24h", "7d", "30d"]
RANGES: dict[str, tuple[timedelta, timedelta]] = {  # range -> (span, trend bucket)
    "1h": (timedelta(hours=1), timedelta(minutes=5)),
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(hours=6)),
    "30d": (timedelta(days=30), timedelta(days=1)),
}

# Health thresholds (README "Queue health").
DLQ_UNHEALTHY = 10
OLDEST_AGE_DEGRADED_S = 300
OLDEST_AGE_UNHEALTHY_S = 900
BACKLOG_DEGRADED = 1000
# The shared part of queue-health (SQS depths, CloudWatch's oldest-message age, the Lambda API's
# worker state) is read at most once in this many seconds per container: a dashboard polling every
# second costs no more than this, and the Lambda control plane's low rate limit is not hit.
QUEUE_HEALTH_CACHE_S = 5.0


# The largest redrive body the request can need: 1000 job ids of 255 printable ASCII characters,
# each spelled as a 6-byte \u escape (1.53 MB), with whitespace.
MAX_REDRIVE_BODY_BYTES = 2 * 1024 * 1024
# The redrive works in batches of one SendMessageBatch each, and stops starting new ones once
# REDRIVE_TIME_BUDGET_S have passed, well within the API functions' timeout (topology.API_TIMEOUT_S).
REDRIVE_BATCH = SEND_BATCH_MAX
REDRIVE_TIME_BUDGET_S = 8.0
REDRIVE_DEFAULT_LIMIT = 500
# A redrive mark older than this belongs to a redrive that died between sending and settling
# (more than the API's timeout): the next redrive sends those rows again.
REDRIVE_UNCONFIRMED_AFTER_S = 120
# One org's redriven deliveries not finished yet (pending, processing, failed) are at most this
# many: the queue is shared, and an org's sender can make dead letters at will. A redrive that
# would go past it redrives only up to it; one at it is refused (429 redrive_backlog).
REDRIVE_MAX_PENDING = 1000
# SQS's reason for refusing a message, as the redrive answers it (its own text, cut: bounded answer).
MAX_NOT_SENT_ERROR_CHARS = 500


# The largest `after`: the largest integer every JSON reader takes exactly (a JavaScript client, the
# OpenAPI document's own number), far above any delivery log id (bigint, counting from 1), and
# below PostgreSQL's bigint, which the database could not take past (a 500 before this bound).
MAX_ROW_ID = 2**53 - 1


class RedriveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_ids: list[JobId] | None = Field(default=None, min_length=1, max_length=1000)
    after: int | None = Field(
        default=None,
        ge=0,
        le=MAX_ROW_ID,
        strict=True,  # an integer, never a boolean read as 0 or 1
        description="`next_after` of the previous answer: continue after the rows it reached",
    )
    limit: int = Field(
        default=REDRIVE_DEFAULT_LIMIT,
        ge=1,
        le=1000,
        strict=True,
        description="At most this many dead letters in this call (fewer if its time runs out)",
    )


class NotSent(BaseModel):
    job_id: str
    error: str = Field(description="SQS's reason for refusing the message; the row stays a dead letter")


class RedriveResult(BaseModel):
    redriven: int
    job_ids: list[str]
    not_sent: list[NotSent] = Field(
        description="Dead letters SQS refused or that are too large for one SQS message (1 MiB):"
        " still dead letters, passed over"
    )
    next_after: int | None = Field(
        description="More dead letters may be left: send this as `after` to continue. null: none left"
    )


class QueueView(BaseModel):
    waiting: int
    in_flight: int
    delayed: int
    oldest_message_age_s: float | None = Field(
        description="CloudWatch ApproximateAgeOfOldestMessage; null when there is no datapoint (an"
        " emulator) or CloudWatch did not answer (then a reason says the age is unknown)"
    )


class DeadLetterQueueView(BaseModel):
    waiting: int
    in_flight: int
    delayed: int
    depth: int


class OrgDeliveries(BaseModel):
    pending: int
    processing: int
    failed: int
    dead_letter: int
    oldest_unfinished_age_s: float | None


class HealthThresholds(BaseModel):
    dead_letter_unhealthy: int
    oldest_age_degraded_s: int
    oldest_age_unhealthy_s: int
    backlog_degraded: int


class QueueHealth(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    reasons: list[str]
    queue: QueueView | None = Field(
        description="The shared webhook queue's depths: admins only (null for members)"
    )
    dead_letter_queue: DeadLetterQueueView | None = Field(
        description="The shared dead-letter queue's depths: admins only (null for members)"
    )
    worker: WorkerState
    org: OrgDeliveries
    thresholds: HealthThresholds


class OutcomeCounts(BaseModel):
    applied: int = Field(description="Completed, and the event took effect (booked, cancelled, rescheduled)")
    refused: int = Field(
        description="Completed, and the business refused it (slot taken, no such appointment, …)"
    )
    ignored: int = Field(description="Completed with no effect: no handler for the event type")
    invalid: int = Field(description="Dead-lettered at once: the payload can never succeed (field errors)")


class DeliveryCounts(BaseModel):
    total: int
    completed: int
    failed: int
    dead_letter: int
    in_progress: int
    success_rate: float = Field(
        description="completed / total (0 when empty): processed without error. A refused or ignored"
        " webhook is processed without error, so it counts as a success: `outcomes` says what each did"
    )
    avg_processing_ms: float | None
    outcomes: OutcomeCounts


class EventTypeDeliveryCounts(DeliveryCounts):
    event_type: str


class TrendBucket(BaseModel):
    bucket_start: datetime
    total: int
    completed: int
    failed: int
    dead_letter: int


# Per event type, an answer lists the busiest MAX_EVENT_TYPES_SHOWN (0014): a sender chooses its
# types freely.
MAX_EVENT_TYPES_SHOWN = 100
_BY_TYPE = f"The {MAX_EVENT_TYPES_SHOWN} busiest event types of the range, by name"


class DeliveryStats(BaseModel):
    range: Range
    bucket: str
    since: datetime
    until: datetime
    totals: DeliveryCounts
    by_event_type: list[EventTypeDeliveryCounts] = Field(description=_BY_TYPE)
    event_type_count: int = Field(description="How many event types the range holds")
    truncated: bool = Field(description="Whether by_event_type lists fewer than event_type_count")
    trend: list[TrendBucket]


class Percentiles(BaseModel):
    count: int
    p50: float
    p95: float
    p99: float
    avg: float
    max: float


class EventTypePercentiles(Percentiles):
    event_type: str


class PercentileBucket(BaseModel):
    bucket_start: datetime
    count: int = Field(description="Completed deliveries created in the bucket (0: figures are 0)")
    p50: float
    p95: float
    p99: float


class ProcessingTime(BaseModel):
    range: Range
    unit: Literal["ms"]
    overall: Percentiles
    by_event_type: list[EventTypePercentiles] = Field(description=_BY_TYPE)
    event_type_count: int = Field(description="How many event types completed deliveries of the range have")
    truncated: bool = Field(description="Whether by_event_type lists fewer than event_type_count")
    bucket: str = Field(description="The trend's bucket width, in seconds (e.g. `300s`)")
    trend: list[PercentileBucket] = Field(description="P50/P95/P99 per bucket of creation, oldest first")


# The booking thresholds of the operations console and the dashboard's alarms (README).
BOOKING_LATENCY_THRESHOLD_MS = 200.0
BUSY_RATE_THRESHOLD = 0.01


class BookingMetrics(BaseModel):
    range: Range
    scope: Literal["deployment"] = Field(
        description="The figures are the whole deployment's: booking metrics carry no org dimension"
    )
    attempted: int = Field(description="POST /appointments that reached the booking service")
    created: int
    conflicts: int = Field(description="409 slot_conflict answers")
    busy: int = Field(description="503 busy: the calendar's lock not granted in time (lock contention)")
    busy_rate: float = Field(description="busy / attempted (0 when none)")
    avg_booking_ms: float | None = Field(description="Mean BookingLatency; null when no booking was timed")
    thresholds: dict[str, float] = Field(description="avg_booking_ms and busy_rate: healthy below these")


class Delivery(BaseModel):
    job_id: str
    event_type: str
    status: Literal["pending", "processing", "completed", "failed", "dead_letter"]
    attempts: int
    max_attempts: int
    error_message: str | None
    outcome: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    event_data: dict[str, Any] | None = Field(
        default=None,
        description="The webhook's payload (personal data): present for admins only, newest first"
        " while the payloads shown stay within 1 MiB",
        exclude_if=lambda value: value is None,
    )
    event_data_omitted: bool | None = Field(
        default=None,
        description="Admins: `true` when this payload is left out, being larger than what the newer"
        " payloads shown left of the answer's 1 MiB",
        exclude_if=lambda value: value is None,
    )


Outcome = Literal["applied", "refused", "ignored", "invalid"]
# The delivery log's `outcome` (webhook_events.Outcome.result, the processor's) as the API names it.
OUTCOMES: dict[str, Outcome] = {
    "applied": "applied",
    "rejected": "refused",
    "ignored": "ignored",
    "invalid_payload": "invalid",
}


class AttemptView(BaseModel):
    attempt: int
    at: datetime
    result: Literal["completed", "failed", "dead_letter"]
    error: str | None = Field(description="Its error (first 2,000 characters); null when it completed")
    processing_ms: int | None


class RedriveView(BaseModel):
    at: datetime
    attempts: int = Field(description="The attempts it had made when an admin redrove it")


class DeliveryLookup(BaseModel):
    job_id: str = Field(description="The webhook id (the sender's `webhook-id` header)")
    event_type: str
    status: Literal["pending", "processing", "completed", "failed", "dead_letter"]
    outcome: Outcome | None = Field(
        description="What the webhook did: `applied`, `refused` (see `reason`), `ignored` (unknown"
        " type) or `invalid` (field errors in `error_message`); null while it has none (pending,"
        " retrying, or given up after its attempts: see `status`)"
    )
    reason: str | None = Field(
        description="Why it was refused or ignored: `slot_conflict` (the conflicting appointments in"
        " `detail.conflicts`), `not_found`, a calendar rule's code, `backfill_not_allowed`,"
        " `unknown_event_type`, …; `invalid_payload` when invalid; `gave_up` when dead-lettered after"
        " its attempts"
    )
    detail: dict[str, Any] = Field(description="The outcome's detail as the processor recorded it")
    attempts: int
    max_attempts: int
    created_at: datetime = Field(description="When the receiver accepted it")
    last_attempt_at: datetime | None
    completed_at: datetime | None
    error_message: str | None = Field(description="The last attempt's error (first 2,000 characters)")
    attempt_history: list[AttemptView] = Field(
        description="Each attempt recorded, oldest first (the newest 100)"
    )
    redrives: list[RedriveView] = Field(
        description="Each time an admin redrove it, oldest first (the newest 100)"
    )


def delivery_lookup(row: dict[str, Any]) -> DeliveryLookup:
    raw = row.get("outcome")
    detail: dict[str, Any] = row.get("outcome_detail") or {}
    outcome = OUTCOMES.get(raw) if raw else None
    reason: str | None = None
    if outcome == "refused":
        status = detail.get("status")
        reason = "slot_conflict" if status == "conflict" else detail.get("code") or status
    elif outcome == "ignored":
        reason = "unknown_event_type"
    elif outcome == "invalid":
        reason = "invalid_payload"
    elif raw and outcome is None:
        reason = raw  # gave_up: dead-lettered after its attempts
    return DeliveryLookup.model_validate({**row, "outcome": outcome, "reason": reason, "detail": detail})


class DeliveryList(BaseModel):
    total: int
    items: list[Delivery] = Field(description="The newest `limit`; texts cut to their bounds")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _depth(depth: QueueDepth) -> dict[str, int]:
    return {"waiting": depth.visible, "in_flight": depth.in_flight, "delayed": depth.delayed}


@dataclass(frozen=True)
class _Shared:
    """What every org shares: read together, cached together."""

    main: QueueDepth
    dead: QueueDepth
    oldest: float | None
    worker: WorkerState
    oldest_unreadable: str | None = None  # why CloudWatch gave no age (not: no datapoint)


class MetricsService:
    def __init__(
        self,
        db: Database,
        queue: WebhookQueue,
        dlq: WebhookQueue,
        ages: QueueAgeMetric,
        workers: WorkerStateSource,
        retry_budget: int,
        bookings: BookingMetricSource | None = None,
    ) -> None:
        self._bookings = bookings
        self._db = db
        self._log = WebhookRepository(db)
        self._queue = queue
        self._dlq = dlq
        self._ages = ages
        self._workers = workers
        self._retry_budget = retry_budget
        self.queue_health_cache_s = QUEUE_HEALTH_CACHE_S
        self.redrive_max_pending = REDRIVE_MAX_PENDING
        self.clock: Callable[[], float] = time.monotonic
        self._shared: tuple[float, _Shared] | None = None

    def _shared_state(self) -> _Shared:
        now = self.clock()
        if self._shared is not None and now < self._shared[0]:
            return self._shared[1]
        oldest, unreadable = None, None
        try:
            oldest = self._ages.oldest_message_age_s(self._queue.url.rstrip("/").rsplit("/", 1)[-1])
        except MetricUnreadable as exc:
            logger.warning("the queue's oldest message age could not be read", extra={"error": exc.reason})
            unreadable = exc.reason
        shared = _Shared(
            main=self._queue.depth(),
            dead=self._dlq.depth(),
            oldest=oldest,
            worker=self._workers.read(),
            oldest_unreadable=unreadable,
        )
        self._shared = (now + self.queue_health_cache_s, shared)
        return shared

    def queue_health(self, actor: Actor) -> QueueHealth:
        """Members get the status, the worker and their org's deliveries, with reasons that name no
        shared count; admins get the shared queues' depths as well."""
        shared = self._shared_state()
        main, dead, oldest, worker = shared.main, shared.dead, shared.oldest, shared.worker
        admin = actor.is_admin
        counts = self._log.status_counts(actor.org_id)
        oldest_unfinished = counts.pop("oldest_unfinished_at")
        if oldest_unfinished is not None:
            age = datetime.now(UTC) - datetime.fromisoformat(oldest_unfinished)
            counts["oldest_unfinished_age_s"] = round(age.total_seconds(), 1)
        else:
            counts["oldest_unfinished_age_s"] = None
        dlq_depth = dead.visible + dead.in_flight + dead.delayed
        unhealthy, degraded = [], []
        if worker.state == "Unknown":  # the Lambda API did not answer (throttled): not a stopped worker
            degraded.append(f"worker state unknown ({worker.last_processing_result or 'unreadable'})")
        elif worker.state != "Enabled":
            unhealthy.append(f"worker state is {worker.state}")
        if dlq_depth >= DLQ_UNHEALTHY:
            unhealthy.append(
                f"{dlq_depth} messages in the dead-letter queue"
                if admin
                else "the dead-letter queue is filling up"
            )
        elif dlq_depth > 0:
            degraded.append(
                f"{_count(dlq_depth, 'message')} in the dead-letter queue"
                if admin
                else "messages in the dead-letter queue"
            )
        if shared.oldest_unreadable is not None:  # CloudWatch did not answer: the age is not known
            degraded.append(f"oldest message age unknown ({shared.oldest_unreadable})")
        if oldest is not None and oldest >= OLDEST_AGE_UNHEALTHY_S:
            unhealthy.append(
                f"oldest message is {oldest:.0f}s old" if admin else "webhooks wait in the queue"
            )
        elif oldest is not None and oldest >= OLDEST_AGE_DEGRADED_S:
            degraded.append(f"oldest message is {oldest:.0f}s old" if admin else "webhooks wait in the queue")
        if main.visible >= BACKLOG_DEGRADED:
            degraded.append(
                f"{_count(main.visible, 'message')} waiting" if admin else "the queue is backed up"
            )
        if counts["dead_letter"] > 0:
            n = counts["dead_letter"]
            degraded.append(f"{n} of this org's deliveries {'is' if n == 1 else 'are'} dead-lettered")
        status = "unhealthy" if unhealthy else "degraded" if degraded else "healthy"
        return QueueHealth(
            status=status,
            reasons=unhealthy + degraded,
            queue=QueueView(**_depth(main), oldest_message_age_s=oldest) if admin else None,
            dead_letter_queue=DeadLetterQueueView(**_depth(dead), depth=dlq_depth) if admin else None,
            worker=worker,
            org=OrgDeliveries.model_validate(counts),
            thresholds=HealthThresholds(
                dead_letter_unhealthy=DLQ_UNHEALTHY,
                oldest_age_degraded_s=OLDEST_AGE_DEGRADED_S,
                oldest_age_unhealthy_s=OLDEST_AGE_UNHEALTHY_S,
                backlog_degraded=BACKLOG_DEGRADED,
            ),
        )

    def delivery_stats(self, actor: Actor, range_: Range) -> DeliveryStats:
        span, bucket = RANGES[range_]
        stats = self._log.delivery_stats(actor.org_id, span, bucket)
        return DeliveryStats.model_validate(
            {"range": range_, "bucket": f"{int(bucket.total_seconds())}s", **stats}
        )

    def processing_time(self, actor: Actor, range_: Range) -> ProcessingTime:
        span, bucket = RANGES[range_]
        return ProcessingTime.model_validate(
            {
                "range": range_,
                "unit": "ms",
                **self._log.processing_time(actor.org_id, span),
                "bucket": f"{int(bucket.total_seconds())}s",
                "trend": self._log.processing_time_trend(actor.org_id, span, bucket),
            }
        )

    def booking_metrics(self, range_: Range) -> BookingMetrics:
        if self._bookings is None:
            raise UpstreamUnavailable("booking metrics are not configured here", {})
        span, _ = RANGES[range_]
        try:
            f = self._bookings.read(span)
        except Exception as exc:
            logger.warning("booking metrics: CloudWatch failed", extra={"error": type(exc).__name__})
            raise UpstreamUnavailable("CloudWatch could not be read, retry shortly", {}) from exc
        attempted = int(f["BookingAttempted"])
        count = f["BookingLatency.count"]
        return BookingMetrics(
            range=range_,
            scope="deployment",
            attempted=attempted,
            created=int(f["BookingCreated"]),
            conflicts=int(f["BookingConflict"]),
            busy=int(f["BookingBusy"]),
            busy_rate=round(f["BookingBusy"] / attempted, 4) if attempted else 0.0,
            avg_booking_ms=round(f["BookingLatency.sum"] / count, 2) if count else None,
            thresholds={"avg_booking_ms": BOOKING_LATENCY_THRESHOLD_MS, "busy_rate": BUSY_RATE_THRESHOLD},
        )

    def delivery(self, actor: Actor, job_id: str) -> DeliveryLookup:
        """One webhook of the org by its id: status, attempts, outcome (never the payload)."""
        row = self._log.delivery(actor.org_id, job_id)
        if row is None:
            raise NotFound("no webhook with this id in this org", {"webhook_id": job_id})
        return delivery_lookup(row)

    def recent_failures(self, actor: Actor, limit: int) -> DeliveryList:
        return DeliveryList.model_validate(
            self._log.failures(actor.org_id, ["failed", "dead_letter"], limit, with_payload=False)
        )

    def dead_letters(self, actor: Actor, limit: int) -> DeliveryList:
        """Payloads are personal data: admins see them, members see ids, types, errors, counts."""
        return DeliveryList.model_validate(
            self._log.failures(actor.org_id, ["dead_letter"], limit, with_payload=actor.is_admin)
        )

    def redrive(self, actor: Actor, request: RedriveRequest) -> RedriveResult:
        """Dead letters back to `pending` and onto the queue, in batches of one SendMessageBatch.

        Each batch is three short steps and no transaction spans them: mark up to ten rows
        `pending` (one statement), send them (no row locked meanwhile), settle (one statement:
        the rows SQS took are audited, those it refused are dead letters again). So nothing stays
        marked redriven that was not sent, and the processor never waits on a redrive.

        Each dead letter is sent at least once and, but for two cases, exactly once: the SDK
        retrying a SendMessageBatch whose answer was lost, and a redrive dying between sending and
        settling (its rows are sent again by a redrive after REDRIVE_UNCONFIRMED_AFTER_S). A second
        copy of a message is a duplicate the processor's claim acknowledges (applied once).

        The rows of a batch go in SendMessageBatch calls filled by bytes within SQS's limits
        (WebhookQueue.send_many): a dead letter too large for one SQS message, or one SQS refuses,
        is listed in `not_sent` with the reason, stays a dead letter and is passed over (the cursor
        moves past it); a batch refused as too long is sent message by message.

        The org may have at most REDRIVE_MAX_PENDING redriven deliveries unfinished: a call
        redrives only up to that, and one made at it is refused (RedriveBacklog, 429).

        The call stops after `limit` dead letters or REDRIVE_TIME_BUDGET_S, and its answer's
        `next_after` says where to continue. SQS failing as a whole answers 503 once the rows in
        hand it did not take are back to dead letters; what it took stays redriven, and the 503's
        `next_after` is where to retry from (0: the start)."""
        started = time.monotonic()
        org = actor.org_id
        pending = self._log.redrive_pending_count(org, self.redrive_max_pending, REDRIVE_UNCONFIRMED_AFTER_S)
        if pending >= self.redrive_max_pending:
            raise RedriveBacklog(
                f"{self.redrive_max_pending} or more redriven deliveries of this org are not processed"
                " yet: redrive more once they are",
                {"pending_redriven": pending, "max_pending_redriven": self.redrive_max_pending},
            )
        limit = min(request.limit, self.redrive_max_pending - pending)
        after = request.after
        redriven: list[str] = []
        not_sent: list[NotSent] = []
        exhausted = False
        while len(redriven) + len(not_sent) < limit:
            if time.monotonic() - started > REDRIVE_TIME_BUDGET_S:
                break
            size = min(REDRIVE_BATCH, limit - len(redriven) - len(not_sent))
            items = self._log.redrive_mark(
                org, request.job_ids, after, size, self._retry_budget, REDRIVE_UNCONFIRMED_AFTER_S
            )
            if not items:
                exhausted = True
                break
            messages = [
                OutgoingWebhook(
                    # compact, UTF-8 as stored: the payload as the receiver bounds it
                    # (stored_json_bytes), characters SQS refuses escaped (the same JSON)
                    escape_for_sqs(json.dumps(i["event_data"], separators=(",", ":"), ensure_ascii=False)),
                    str(org),
                    i["job_id"],
                    i["event_type"],
                )
                for i in items
            ]
            try:
                refusals = self._queue.send_many(messages)
            except SendInterrupted as exc:
                # SQS failed as a whole: what it answered before stays answered, the rest of the
                # marked rows are dead letters again, and the caller retries from `after`
                logger.warning("redrive: SQS failed", extra={"error": exc.reason})
                done = list(zip(items, exc.results, strict=False))
                sent = [i["job_id"] for i, why in done if why is None]
                self._log.redrive_settle(
                    org, actor.label, sent, [i["job_id"] for i in items if i["job_id"] not in set(sent)]
                )
                redriven += sent
                raise UpstreamUnavailable(
                    "the queue could not be reached; what is not listed was not redriven, retry shortly",
                    {"redriven": len(redriven), "job_ids": redriven, "next_after": after or 0},
                ) from exc.cause
            sent = [i["job_id"] for i, why in zip(items, refusals, strict=True) if why is None]
            refused = [(i["job_id"], why) for i, why in zip(items, refusals, strict=True) if why is not None]
            self._log.redrive_settle(org, actor.label, sent, [job for job, _ in refused])
            redriven += sent
            not_sent += [NotSent(job_id=job, error=why[:MAX_NOT_SENT_ERROR_CHARS]) for job, why in refused]
            after = max([after or 0, *(int(i["id"]) for i in items if not i["resend"])]) or after
        return RedriveResult(
            redriven=len(redriven),
            job_ids=redriven,
            not_sent=not_sent,
            # not exhausted: more may be left, after `after` (0 if this call reached no dead letter)
            next_after=None if exhausted else (after or 0),
        )

    def redrive_history(self, org_id: UUID, job_id: str) -> list[dict[str, Any]]:
        return self._log.redrive_history(org_id, job_id)
