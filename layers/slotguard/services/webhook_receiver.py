"""Webhook intake: verify the Standard Webhooks signature, enqueue, answer 202.
Touches no database."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from pydantic import BaseModel
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from slotguard.aws.secrets import EdgeSecret, SecretStoreUnavailable, WebhookSecretStore
from slotguard.aws.sqs import (
    SQS_CHARACTERS,
    MessageRefused,
    WebhookQueue,
    escape_for_sqs,
    refused_character,
)
from slotguard.errors import BadRequest, PayloadTooLarge, Unauthorized, UpstreamUnavailable
from slotguard.models import MAX_WEBHOOK_ID_CHARS, WEBHOOK_ID_RE, parse_json, storable, stored_json_bytes
from slotguard.observability import logger


class WebhookRejected(Unauthorized):
    """401 with one body for every reason, so a prober learns nothing; the reason is logged."""

    def __init__(self, reason: str) -> None:
        super().__init__("the webhook could not be verified")
        self.reason = reason


class Accepted(BaseModel):
    id: str
    status: str = "queued"


@dataclass(frozen=True)
class Verified:
    webhook_id: str
    event_type: str


SIGNATURE_BYTES = 32  # HMAC-SHA256
# A webhook's type travels as an SQS message attribute, is a label in logs and metrics and a column
# of the delivery log: a name, not a payload.
MAX_TYPE_CHARS = 200


def v1_signatures(header: str) -> list[str]:
    """The `v1,<base64>` entries of a webhook-signature header, each parsed on its own.

    Standard Webhooks: the header holds space-separated entries `<version>,<signature>`; a
    receiver checks the versions it knows and ignores the rest. So an entry that does not parse
    (no comma, two commas, bad base64, not 32 bytes, an empty entry from a double space) or of
    another version is skipped: it never voids a valid signature beside it."""
    kept = []
    for entry in header.split():
        version, comma, signature = entry.partition(",")
        if version != "v1" or not comma or "," in signature:
            continue
        try:
            if len(base64.b64decode(signature, validate=True)) != SIGNATURE_BYTES:
                continue
        except (ValueError, binascii.Error):
            continue
        kept.append(entry)
    return kept


def verify_signature(secrets: list[str], headers: Mapping[str, str], body: bytes) -> None:
    """Standard Webhooks verification (reference library: several signatures, constant-time
    compare, +-5 minutes) against every active secret of the org, on the header's v1 entries
    that parse (v1_signatures)."""
    signatures = v1_signatures(headers.get("webhook-signature", ""))
    if signatures:
        headers = {**headers, "webhook-signature": " ".join(signatures)}
    # else the header goes as it came: the library names the first problem (timestamp first)
    last = "bad_signature"
    for secret in secrets:
        try:
            Webhook(secret).verify(body, dict(headers), json_parse=False)
            return
        except WebhookVerificationError as exc:
            text = str(exc)
            last = (
                "missing_headers"
                if "Missing" in text
                else "stale_timestamp"
                if "too old" in text
                else "future_timestamp"
                if "too new" in text
                else "bad_timestamp"
                if "Invalid" in text
                else "bad_signature"
            )
        except (ValueError, binascii.Error, UnicodeDecodeError):
            last = "malformed_signature"
    raise WebhookRejected(last)


class WebhookReceiver:
    def __init__(
        self,
        secrets: WebhookSecretStore,
        queue: WebhookQueue,
        max_body_bytes: int,
        edge: EdgeSecret | None = None,
    ) -> None:
        # The bound of the body as sent (413 beyond) and of its payload as stored (400 beyond)
        self._secrets = secrets
        self._queue = queue
        self._max_body_bytes = max_body_bytes
        # In AWS: only requests that came through the edge (CloudFront and its per-org rate rule)
        self._edge = edge

    def receive(self, org_id: str, headers: Mapping[str, str], body: bytes) -> Accepted:
        if len(body) > self._max_body_bytes:
            raise PayloadTooLarge(
                f"the body exceeds {self._max_body_bytes} bytes", {"max_bytes": self._max_body_bytes}
            )
        verified = self._verify(org_id, headers, body)
        try:
            # The same JSON, with any character SQS refuses (raw U+FFFE, U+FFFF in a string)
            # written as its escape: any valid JSON travels.
            self._queue.send(
                escape_for_sqs(body.decode()),
                org_id=org_id,
                webhook_id=verified.webhook_id,
                event_type=verified.event_type,
            )
        except MessageRefused as exc:  # for good: a 503 would have the sender retry in vain
            logger.warning("the queue refused the webhook", extra={"error": str(exc)})
            raise BadRequest(f"the queue refused this webhook ({exc})") from exc
        except Exception as exc:
            logger.exception("enqueue failed")
            raise UpstreamUnavailable("the webhook could not be queued, retry shortly") from exc
        return Accepted(id=verified.webhook_id)

    def _verify(self, org_id: str, headers: Mapping[str, str], body: bytes) -> Verified:
        lowered = {k.lower(): v for k, v in headers.items()}
        if self._edge is not None:
            # First, before any org's secrets are read: a request sent to the origin's own URL
            # skipped the edge's per-org limit. Refused with the one 401 body, like every reason.
            try:
                via_edge = self._edge.matches(lowered.get(EdgeSecret.HEADER))
            except SecretStoreUnavailable as exc:
                # the sender only learns to retry: the cause is for the operator, in the log
                logger.warning("the edge's secret could not be read", extra={"error": str(exc)})
                raise UpstreamUnavailable("signature secrets are unavailable, retry shortly") from exc
            if not via_edge:
                raise WebhookRejected("not_via_edge")
        try:
            canonical_org = str(UUID(org_id))
        except ValueError:
            raise WebhookRejected("unknown_org") from None
        if canonical_org != org_id:  # the canonical spelling only, as in the JWT claim
            raise WebhookRejected("unknown_org")
        webhook_id = lowered.get("webhook-id", "")
        if not (lowered.get("webhook-signature") and lowered.get("webhook-timestamp") and webhook_id):
            raise WebhookRejected("missing_headers")
        if not WEBHOOK_ID_RE.match(webhook_id):
            # Said plainly (it reveals nothing about the org): a retry with the same id cannot pass.
            raise BadRequest(
                f"the webhook-id header must be 1..{MAX_WEBHOOK_ID_CHARS} printable ASCII characters",
                {"max_chars": MAX_WEBHOOK_ID_CHARS},
            )
        try:
            secrets = self._secrets.active_secrets(canonical_org)
        except SecretStoreUnavailable as exc:
            logger.warning(
                "the org's webhook secrets could not be read",
                extra={"org_id": canonical_org, "error": str(exc)},
            )
            raise UpstreamUnavailable("signature secrets are unavailable, retry shortly") from exc
        if not secrets:
            raise WebhookRejected("unknown_org")
        try:
            verify_signature(secrets, lowered, body)
        except WebhookRejected as exc:
            # A signature none of the cached secrets verifies may be made with a secret rotated in
            # since they were read: read them again (at most every few seconds per org), once.
            if exc.reason != "bad_signature":
                raise
            try:
                fresh = self._secrets.refreshed_secrets(canonical_org)
            except SecretStoreUnavailable:
                raise exc from None
            if not fresh or fresh == secrets:
                raise
            verify_signature(fresh, lowered, body)
        try:
            # The processor reads the same text: strict UTF-8 JSON, no BOM, no NaN, any depth the
            # parser takes (storable() below bounds it).
            payload = parse_json(body)
        except ValueError:
            raise BadRequest("the body is not valid UTF-8 JSON") from None
        try:
            storable(payload, "the payload")
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        stored = stored_json_bytes(payload, utf8=True)
        if stored > self._max_body_bytes:
            # PostgreSQL's jsonb writes numbers in full (1e308 is 309 digits): 240 KB of them are
            # 12 MB once stored, in every redrive message and dead-letter list. Refused for good.
            raise BadRequest(
                f"the payload is {stored} bytes as stored (numbers written in full: 1e300 is 301"
                f" digits), over the {self._max_body_bytes}-byte limit",
                {"max_bytes": self._max_body_bytes, "stored_bytes": stored},
            )
        event_type = payload.get("type") if isinstance(payload, dict) else None
        if not isinstance(event_type, str) or not event_type.strip():
            raise BadRequest("the payload needs a string 'type'")
        if len(event_type) > MAX_TYPE_CHARS:
            raise BadRequest(
                f"the payload's 'type' is {len(event_type)} characters,"
                f" over the {MAX_TYPE_CHARS}-character limit",
                {"max_chars": MAX_TYPE_CHARS, "chars": len(event_type)},
            )
        refused = refused_character(event_type)
        if refused is not None:
            # The type travels as a message attribute, which SQS refuses such characters in.
            raise BadRequest(
                f"the payload's 'type' holds U+{ord(refused):04X}, a character SQS cannot carry"
                f" (it takes {SQS_CHARACTERS})",
                {"character": f"U+{ord(refused):04X}"},
            )
        return Verified(webhook_id=webhook_id, event_type=event_type)
