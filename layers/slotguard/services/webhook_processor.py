"""Processing one queued webhook: claim its delivery-log row, run its event type's handler,
commit the effect with the `completed` mark, or record the failure and back off.

Only a handler run that reaches an outcome spends an attempt of the delivery's budget
(WEBHOOK_MAX_ATTEMPTS): the completion or the recorded failure counts it. A claim is a token
and spends nothing, so a claim whose handler never got to an outcome (the database went away,
the invocation died before reaching the record or while running it) costs no attempt; a late
finisher whose claim was taken over holds an old token and can record nothing."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from slotguard.config import RetryPolicy
from slotguard.db.booking_repository import BookingRepository
from slotguard.db.connection import Database
from slotguard.db.webhook_repository import WebhookRepository
from slotguard.errors import DatabaseUnavailable, DomainError
from slotguard.observability import logger
from slotguard.services.webhook_events import (
    HANDLERS,
    EventContext,
    EventHandler,
    InvalidPayload,
    Outcome,
    RetriableFailure,
    ignored,
)


@dataclass(frozen=True)
class QueuedWebhook:
    """What the processor needs of one SQS record."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: Mapping[str, str]  # message attributes: org_id, webhook_id, event_type
    receive_count: int


class MalformedMessage(Exception):
    """A queue message without the attributes the receiver always sets."""


class RecordFailed(Exception):
    """Report this record as a batch item failure (SQS redelivers it after its backoff)."""


class HandedBack(RecordFailed):
    """The invocation's remaining time could not cover this record: reported as a batch item
    failure, visible again at once, its claim given back, no attempt spent."""


# Releasing a handed-back record's claim is one short statement; below this much time left it
# is not tried (the claim is then re-claimed once stale, still unspent).
RELEASE_MIN_MS = 300


@dataclass(frozen=True)
class ProcessResult:
    status: str  # completed | skipped | failed | dead_letter
    outcome: str | None = None
    attempt: int = 0


def backoff_seconds(attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> int:
    """Capped exponential backoff with "equal jitter": half fixed, half random."""
    ceiling = min(policy.webhook_backoff_cap_s, policy.webhook_backoff_base_s * 2 ** max(0, attempt - 1))
    return math.ceil(ceiling / 2 + rand() * ceiling / 2)


def parse_identity(message: QueuedWebhook) -> tuple[UUID, str, str]:
    try:
        org_id = UUID(message.attributes["org_id"])
        job_id = message.attributes["webhook_id"]
        event_type = message.attributes["event_type"]
    except (KeyError, ValueError) as exc:
        raise MalformedMessage(f"message {message.message_id} lacks org_id/webhook_id/event_type") from exc
    return org_id, job_id, event_type


def parse_payload(body: str) -> tuple[Any, str | None]:
    """(event data to store, why it is unusable or None)."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        return {"unparseable_body": body[:10_000]}, "the body is not JSON"
    if not isinstance(payload, dict):
        return {"payload": payload}, "the payload is not an object"
    return payload, None


def public_error(exc: Exception) -> str:
    """What the delivery log (and so the metrics API) may show of a failure: our own messages,
    and only the class of anything else; a driver's message can carry SQL and bind values,
    so its detail goes to the log alone."""
    if isinstance(exc, RetriableFailure | DomainError):
        return f"{type(exc).__name__}: {exc}"
    logger.warning("webhook handler failed", exc_info=exc)
    return f"{type(exc).__name__} (detail in the processor's log)"


class WebhookProcessor:
    def __init__(
        self,
        db: Database,
        retry: RetryPolicy,
        delay_retry: Callable[[str, int], None],
        *,
        stale_after_s: int,
        lock_wait_ms: int,
        record_budget_ms: int,
    ) -> None:
        self._db = db
        # The time one record may take: a lock wait plus its statements (ProcessorConfig).
        self._record_budget_ms = record_budget_ms
        self._started = 0  # records of this batch that went to the database
        self._out_of_time = False
        self._log = WebhookRepository(db)
        self._bookings = BookingRepository(db, lock_wait_ms)
        self._retry = retry
        self._delay_retry = delay_retry
        self._stale_after_s = stale_after_s
        self._handlers: dict[str, EventHandler] = dict(HANDLERS)
        self._without_effect: set[str] = set()  # event types whose handler touches no database
        self._preclaimed: dict[str, dict[str, Any]] = {}  # receipt handle -> its batch claim

    def register(self, event_type: str, handler: EventHandler, *, effect: bool = True) -> None:
        """Add or replace the handler of an event type. `effect=False` declares a handler that
        touches no database and has no other side effect: its outcome is completed by the
        batch's claim (it may then run once more, if that claim does not complete it)."""
        self._handlers[event_type] = handler
        if effect:
            self._without_effect.discard(event_type)
        else:
            self._without_effect.add(event_type)

    def _has_effect(self, event_type: str) -> bool:
        # An unknown type is `ignored`: no effect.
        return event_type in self._handlers and event_type not in self._without_effect

    def claim_batch(self, messages: Sequence[QueuedWebhook]) -> None:
        """Claim the records of one SQS batch in one statement, ahead of process() for each.

        The same claims, in the same order, that process() would make one by one: the first
        copy of each delivery in the batch is claimed here; a later copy of one (a duplicate in
        the same batch) and a malformed message are left to process(), which sees them after the
        first copy finished, as before. If the statement fails for any reason (the database is
        down, a payload it refuses), nothing is pre-claimed and each record claims on its own,
        with its own failure and backoff, exactly as without batching.

        A record whose handler has no database effect (an unknown type, `ignored`) runs its
        handler here, before the claim, and the statement completes it with that outcome (one
        attempt, as process() would) if it claims it: process() then has nothing left to do for
        it, so such a batch takes one round trip in all. Should the handler raise, the record
        is only claimed, and process() runs it and records the failure as for any other.

        A claim spends no attempt. A record that an invocation never reaches (the function
        timed out or crashed earlier in the batch) keeps its claim until it is stale
        (claim_stale_after_s = the queue's visibility timeout); its redelivery re-claims it under
        a new token as the same attempt. The redrive policy's maxReceiveCount still bounds a
        record whose handler never reaches an outcome.
        """
        self._preclaimed.clear()
        self._started = 0
        self._out_of_time = False
        seen: set[tuple[UUID, str]] = set()
        handles: list[str] = []
        items: list[dict[str, Any]] = []
        for message in messages:
            try:
                org_id, job_id, event_type = parse_identity(message)
            except MalformedMessage:
                continue
            if (org_id, job_id) in seen:
                continue
            seen.add((org_id, job_id))
            payload, unusable = parse_payload(message.body)
            item = {"org_id": str(org_id), "job_id": job_id, "event_type": event_type, "event_data": payload}
            done = None
            if unusable is None and not self._has_effect(event_type):
                done = self._outcome_without_effect(org_id, job_id, event_type, payload)
            if done is not None:
                item["complete"] = done
            handles.append(message.receipt_handle)
            items.append(item)
        if len(items) < 2 and not any("complete" in item for item in items):
            return  # nothing to save: process() claims the one record itself
        try:
            claims = self._log.claim_batch(
                items, max_attempts=self._retry.webhook_max_attempts, stale_after_s=self._stale_after_s
            )
        except Exception as exc:  # each record claims on its own, with its own failure path
            logger.warning(
                "batch claim failed; claiming record by record", extra={"error": type(exc).__name__}
            )
            return
        self._preclaimed = dict(zip(handles, claims, strict=True))

    def _outcome_without_effect(
        self, org_id: UUID, job_id: str, event_type: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        """What the batch claim completes an effect-free record with; None if its handler raised
        (process() runs it again and records that failure)."""
        handler = self._handlers.get(event_type, ignored)
        started = time.perf_counter()
        try:
            outcome = handler(EventContext(org_id, job_id, self._bookings), payload.get("data"))
        except Exception:
            return None
        return {
            "outcome": outcome.result,
            "detail": outcome.detail,
            "processing_ms": int((time.perf_counter() - started) * 1000),
        }

    def process(self, message: QueuedWebhook, remaining_ms: Callable[[], int] | None = None) -> ProcessResult:
        """One record. `remaining_ms` (the Lambda context's get_remaining_time_in_millis): a record
        that needs the database is only started while the invocation's remaining time covers a
        lock wait plus its statements; once it does not, this record and every later one of the
        batch are handed back (HandedBack). The batch's first such record always runs, so a batch
        always makes progress."""
        claim = self._preclaimed.pop(message.receipt_handle, None)
        if claim is not None and claim["action"] == "completed":
            return ProcessResult("completed", claim["outcome"], int(claim["attempt"]))  # by the batch claim
        org_id, job_id, event_type = parse_identity(message)
        if claim is None or claim["action"] == "process":  # this record goes to the database
            if remaining_ms is not None and self._started > 0:
                left = remaining_ms()
                if self._out_of_time or left < self._record_budget_ms:
                    self._out_of_time = True
                    self._hand_back(message, org_id, job_id, claim, remaining_ms)
            self._started += 1
        payload, unusable = parse_payload(message.body)
        claim = claim or self._claim(message, org_id, job_id, event_type, payload)
        if claim["action"] == "skip":
            if claim["status"] == "mismatch":  # the id names another event: this content is dropped
                logger.warning(
                    "a message reusing a webhook id with other content was dropped", extra={"job_id": job_id}
                )
            else:
                logger.info(
                    "duplicate delivery acknowledged", extra={"job_id": job_id, "status": claim["status"]}
                )
            return ProcessResult("skipped", claim["status"], claim["attempt"])
        if claim["action"] == "in_progress":
            if claim.get("status") == "backoff":
                # A failed attempt's backoff is running (another copy of this message failed, in
                # this batch or elsewhere): this copy waits for the rest of it too.
                self._delay_retry(message.receipt_handle, int(claim["retry_after_s"]))
                raise RecordFailed(f"{job_id} is backing off after a failed attempt")
            # Another worker holds it; do not delete the message while that one may still fail.
            raise RecordFailed(f"{job_id} is being processed by another worker")
        attempt = int(claim["attempt"])  # the attempt this run is, if it reaches an outcome
        max_attempts = int(claim["max_attempts"])  # a redriven delivery has a fresh budget
        token = UUID(claim["token"])
        started = time.perf_counter()
        try:
            if unusable:
                raise InvalidPayload(unusable)
            outcome = self._apply(org_id, job_id, token, event_type, payload)
        except InvalidPayload as exc:
            self._record_failure(
                message,
                org_id,
                job_id,
                token,
                attempt,
                str(exc),
                started,
                dead=True,
                outcome="invalid_payload",
            )
            return ProcessResult("dead_letter", "invalid_payload", attempt)
        except DatabaseUnavailable as exc:
            # The database went away under the claim: the handler reached no outcome, so no
            # attempt is spent. The claim is given back if the database is already back (else it
            # is re-claimed once stale), and the message backs off by the receive count like a
            # claim that could not reach the database. SQS's redrive is the backstop.
            self._release(org_id, job_id, token)
            self._delay_retry(message.receipt_handle, self._outage_backoff(message))
            raise RecordFailed(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # RetriableFailure, a handler's bug: retried within the budget
            dead = attempt >= max_attempts
            error = public_error(exc)
            delay = backoff_seconds(attempt, self._retry)  # recorded in the row, for every copy
            self._record_failure(
                message, org_id, job_id, token, attempt, error, started, dead=dead, retry_after_s=delay
            )
            if dead:
                return ProcessResult("dead_letter", "gave_up", attempt)
            self._delay_retry(message.receipt_handle, delay)
            raise RecordFailed(error) from exc
        return ProcessResult("completed", outcome.result, attempt)

    def _claim(
        self, message: QueuedWebhook, org_id: UUID, job_id: str, event_type: str, payload: Any
    ) -> dict[str, Any]:
        try:
            return self._log.claim(
                org_id=org_id,
                job_id=job_id,
                event_type=event_type,
                event_data=payload,
                max_attempts=self._retry.webhook_max_attempts,
                stale_after_s=self._stale_after_s,
            )
        except DatabaseUnavailable as exc:
            # Nothing recorded, no attempt spent; back off by the SQS receive count so an outage
            # is not hammered and the receive budget stretches over it.
            self._delay_retry(message.receipt_handle, self._outage_backoff(message))
            raise RecordFailed("database unavailable") from exc

    def _hand_back(
        self,
        message: QueuedWebhook,
        org_id: UUID,
        job_id: str,
        claim: dict[str, Any] | None,
        remaining_ms: Callable[[], int],
    ) -> None:
        """Give the batch's claim on this record back (unspent, so a redelivery claims it at once)
        and make its message visible again now; then report it as a batch item failure."""
        if claim is not None and remaining_ms() >= RELEASE_MIN_MS:
            self._release(org_id, job_id, UUID(claim["token"]))
        try:
            self._delay_retry(message.receipt_handle, 0)
        except Exception as exc:  # it comes back after the queue's visibility timeout instead
            logger.info(
                "handed-back record stays hidden", extra={"job_id": job_id, "error": type(exc).__name__}
            )
        raise HandedBack(
            f"{job_id} handed back: {remaining_ms()} ms left, a record may need {self._record_budget_ms} ms"
        )

    def _outage_backoff(self, message: QueuedWebhook) -> int:
        """Database down: the delay grows with the receive count (not the attempts, which an
        outage does not spend), so redrive_max_receive_count receives outlast the outage."""
        return backoff_seconds(message.receive_count, self._retry)

    def _release(self, org_id: UUID, job_id: str, token: UUID) -> None:
        try:
            self._log.release(org_id=org_id, job_id=job_id, token=token)
        except Exception as exc:  # still down: the claim is re-claimed once stale, as unspent
            logger.info("claim not released", extra={"job_id": job_id, "error": type(exc).__name__})

    def _apply(
        self, org_id: UUID, job_id: str, token: UUID, event_type: str, payload: dict[str, Any]
    ) -> Outcome:
        handler = self._handlers.get(event_type, ignored)
        started = time.perf_counter()
        context = EventContext(org_id, job_id, self._bookings)
        if not self._has_effect(event_type):
            # No effect to commit with the mark: the `completed` mark is a transaction of its own
            # (one statement, no BEGIN/COMMIT round trips).
            outcome = handler(context, payload.get("data"))
            self._complete(org_id, job_id, token, outcome, started)
            return outcome
        with self._db.transaction():
            outcome = handler(context, payload.get("data"))
            self._complete(org_id, job_id, token, outcome, started)
        return outcome

    def _complete(self, org_id: UUID, job_id: str, token: UUID, outcome: Outcome, started: float) -> None:
        if not self._log.complete(
            org_id=org_id,
            job_id=job_id,
            token=token,
            outcome=outcome.result,
            detail=outcome.detail,
            processing_ms=int((time.perf_counter() - started) * 1000),
        ):
            # Our claim was taken over (we were too slow): roll back, the owner decides.
            raise RetriableFailure("the claim on this delivery was lost")

    def _record_failure(
        self,
        message: QueuedWebhook,
        org_id: UUID,
        job_id: str,
        token: UUID,
        attempt: int,
        error: str,
        started: float,
        *,
        dead: bool,
        outcome: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        try:
            recorded = self._log.fail(
                org_id=org_id,
                job_id=job_id,
                token=token,
                error=error[:2000],
                dead=dead,
                processing_ms=elapsed_ms,
                outcome=outcome,
                retry_after_s=None if dead else retry_after_s,
            )
        except DatabaseUnavailable as exc:
            # Cannot record it now: leave the row 'processing' (re-claimed once stale, this
            # attempt unspent) and retry.
            self._delay_retry(message.receipt_handle, self._outage_backoff(message))
            raise RecordFailed("database unavailable while recording a failure") from exc
        if not recorded:
            # Our claim was taken over (we were too slow): its owner decides; this copy of the
            # message comes back and is skipped, or finds the owner still at work.
            raise RecordFailed(f"{job_id}: the claim on this delivery was lost")
        logger.warning(
            "webhook attempt failed",
            extra={"job_id": job_id, "attempt": attempt, "dead": dead, "error": error[:500]},
        )
