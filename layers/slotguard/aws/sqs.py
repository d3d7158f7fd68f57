"""SQS adapter: the only code that speaks to the webhook queues."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from slotguard.aws.clients import client, error_reason

MAX_VISIBILITY_TIMEOUT_S = 12 * 60 * 60

# The characters SendMessage accepts in a body and in attribute values (SQS API reference); AWS
# refuses any other (InvalidMessageContents; InvalidParameterValue for an attribute value).
SQS_CHARACTERS = "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
SQS_REFUSED_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def refused_character(text: str) -> str | None:
    """The first character of `text` SQS would refuse, None if it takes all of it."""
    found = SQS_REFUSED_CHARACTER.search(text)
    return found.group() if found else None


def escape_for_sqs(json_text: str) -> str:
    """JSON text SQS can carry, meaning the same JSON: every character SQS refuses (in valid JSON
    they can only stand inside strings: raw U+FFFE, U+FFFF) written as its \\u escape."""
    return SQS_REFUSED_CHARACTER.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


class MessageRefused(ValueError):
    """SQS refused this message's content (the sender's fault): sending it again cannot help."""


# The error codes of a SendMessage refused for its content (invalid characters, too large, a bad
# attribute), not for anything a retry could change.
CONTENT_REFUSALS = frozenset({"InvalidMessageContents", "InvalidParameterValue"})


@dataclass(frozen=True)
class OutgoingWebhook:
    """One webhook to put on the queue: its body and the attributes the processor reads."""

    body: str
    org_id: str
    webhook_id: str
    event_type: str


SEND_BATCH_MAX = 10  # SendMessageBatch's limit
# SQS's size limits (Amazon SQS message quotas and the SendMessageBatch reference, since August
# 2025; moto 5.2 and LocalStack apply the same): a message is at most 1 MiB, its body's UTF-8 bytes
# plus each attribute's name, data type and value; a SendMessageBatch at most 1 MiB in all. A queue
# may be configured lower (MaximumMessageSize): SQS's own refusal then names the message.
SQS_MAX_MESSAGE_BYTES = 1_048_576
SQS_MAX_BATCH_BYTES = 1_048_576
# The whole-call errors of a SendMessageBatch refused for its content (the batch too long, one
# message too long or holding characters SQS refuses): each message is then sent alone, so each
# gets its own answer. A bare code or the query protocol's "AWS.SimpleQueueService." form.
BATCH_CONTENT_REFUSALS = CONTENT_REFUSALS | {"BatchRequestTooLong"}


class SendInterrupted(Exception):
    """SQS failed as a whole part-way through send_many: `results` holds the answers of the first
    len(results) messages (None: taken; else SQS's reason); the rest were not sent."""

    def __init__(self, results: list[str | None], cause: BaseException) -> None:
        self.reason = error_reason(cause)  # why, for the log
        super().__init__(f"SQS failed after {len(results)} messages: {self.reason}")
        self.results = results
        self.cause = cause


def _attributes(org_id: str, webhook_id: str, event_type: str) -> dict[str, Any]:
    return {
        "org_id": {"DataType": "String", "StringValue": org_id},
        "webhook_id": {"DataType": "String", "StringValue": webhook_id},
        "event_type": {"DataType": "String", "StringValue": event_type},
    }


def message_bytes(message: OutgoingWebhook) -> int:
    """A message's size as SQS counts it: the body's UTF-8 bytes, and each attribute's name,
    data type and value."""
    attributes = _attributes(message.org_id, message.webhook_id, message.event_type)
    return len(message.body.encode("utf-8", "surrogatepass")) + sum(
        len(name.encode()) + sum(len(str(v).encode("utf-8", "surrogatepass")) for v in attr.values())
        for name, attr in attributes.items()
    )


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int


class WebhookQueue:
    def __init__(self, queue_url: str, sqs: Any | None = None) -> None:
        self.url = queue_url
        self._sqs = sqs or client("sqs")

    def send(self, body: str, *, org_id: str, webhook_id: str, event_type: str) -> str:
        """SendMessage; MessageRefused when SQS refuses the content itself (the sender's fault:
        characters it cannot carry, a message too large), any other failure as it comes."""
        attrs = _attributes(org_id, webhook_id, event_type)
        try:
            answer = self._sqs.send_message(QueueUrl=self.url, MessageBody=body, MessageAttributes=attrs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error_reason(exc) in CONTENT_REFUSALS:
                raise MessageRefused(f"{error.get('Code')}: {error.get('Message', '')}") from exc
            raise
        return str(answer["MessageId"])

    def send_batch(self, messages: list[OutgoingWebhook]) -> list[str | None]:
        """One SendMessageBatch of at most 10 messages. Per message, in order: None when SQS took
        it, else SQS's reason for refusing that one (`Code: message`). A failure of the whole call
        raises (nothing can be said about any message then)."""
        if not 0 < len(messages) <= SEND_BATCH_MAX:
            raise ValueError(f"a batch holds 1..{SEND_BATCH_MAX} messages")
        answer = self._sqs.send_message_batch(
            QueueUrl=self.url,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": m.body,
                    "MessageAttributes": _attributes(m.org_id, m.webhook_id, m.event_type),
                }
                for i, m in enumerate(messages)
            ],
        )
        refused = {
            f["Id"]: f"{f.get('Code', 'Failed')}: {f.get('Message', '')}" for f in answer.get("Failed", [])
        }
        taken = {s["Id"] for s in answer.get("Successful", [])}
        return [
            refused.get(str(i), None if str(i) in taken else "NoAnswer: SQS did not say")
            for i in range(len(messages))
        ]

    def send_many(self, messages: list[OutgoingWebhook]) -> list[str | None]:
        """Any number of messages, in SendMessageBatch calls filled in order by count (10) and by
        bytes (SQS_MAX_BATCH_BYTES). Per message, in order: None when SQS took it, else the reason
        it was not sent: `MessageTooLong: ...` for one over SQS_MAX_MESSAGE_BYTES (never sent), or
        SQS's own refusal of that message. A batch SQS refuses as a whole for its content
        (BatchRequestTooLong, a message too long for this queue, characters it refuses) is sent
        message by message, so no message's content fails another. Any other failure of a call
        raises SendInterrupted with the answers of the messages before that call."""
        answers: list[str | None] = [None] * len(messages)

        def send(indexes: list[int]) -> None:
            try:
                got = self._send_batch_or_each([messages[i] for i in indexes])
            except Exception as exc:
                # the batches go in order: every message before this one's first is answered
                raise SendInterrupted(answers[: indexes[0]], exc) from exc
            for i, answer in zip(indexes, got, strict=True):
                answers[i] = answer

        batch: list[int] = []
        batch_bytes = 0
        for i, message in enumerate(messages):
            size = message_bytes(message)
            if size > SQS_MAX_MESSAGE_BYTES:
                answers[i] = (
                    f"MessageTooLong: the message is {size} bytes, SQS takes at most {SQS_MAX_MESSAGE_BYTES}"
                )
                continue
            if batch and (len(batch) == SEND_BATCH_MAX or batch_bytes + size > SQS_MAX_BATCH_BYTES):
                send(batch)
                batch, batch_bytes = [], 0
            batch.append(i)
            batch_bytes += size
        if batch:
            send(batch)
        return answers

    def _send_batch_or_each(self, messages: list[OutgoingWebhook]) -> list[str | None]:
        try:
            return self.send_batch(messages)
        except ClientError as exc:
            if error_reason(exc) not in BATCH_CONTENT_REFUSALS:
                raise
        answers: list[str | None] = []
        for m in messages:
            try:
                self.send(m.body, org_id=m.org_id, webhook_id=m.webhook_id, event_type=m.event_type)
                answers.append(None)
            except MessageRefused as refused:
                answers.append(str(refused))
        return answers

    def delay_retry(self, receipt_handle: str, seconds: int) -> None:
        """Hide a failed message for `seconds` (its backoff) before SQS redelivers it."""
        self._sqs.change_message_visibility(
            QueueUrl=self.url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(0, min(int(seconds), MAX_VISIBILITY_TIMEOUT_S)),
        )

    def depth(self) -> QueueDepth:
        attrs = self._sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return QueueDepth(
            visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        )
