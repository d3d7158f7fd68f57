"""SQS adapter: the only code that speaks to the webhook queues."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slotguard.aws.clients import client

MAX_VISIBILITY_TIMEOUT_S = 12 * 60 * 60


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
        attrs = _attributes(org_id, webhook_id, event_type)
        answer = self._sqs.send_message(QueueUrl=self.url, MessageBody=body, MessageAttributes=attrs)
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
