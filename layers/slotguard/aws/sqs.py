"""SQS adapter: the only code that speaks to the webhook queues."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from slotguard.aws.clients import client

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


def _attributes(org_id: str, webhook_id: str, event_type: str) -> dict[str, Any]:
    return {
        "org_id": {"DataType": "String", "StringValue": org_id},
        "webhook_id": {"DataType": "String", "StringValue": webhook_id},
        "event_type": {"DataType": "String", "StringValue": event_type},
    }


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
            if error.get("Code") in CONTENT_REFUSALS:
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
