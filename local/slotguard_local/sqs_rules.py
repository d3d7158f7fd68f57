"""moto's SQS with SQS's character rules, as AWS applies them (moto takes any character).

AWS refuses a SendMessage whose body holds a character outside SQS's set (`SQS_CHARACTERS`) with
InvalidMessageContents, and one whose String attribute value does with InvalidParameterValue (the
same message); SendMessageBatch refuses such an entry alone, as a failed entry (the sender's
fault), and sends the others. MotoServer runs moto's server with these rules applied (`serve`),
so a webhook AWS would refuse is refused locally and in the tests too.

It also keeps moto's SQS from running a queue's Lambda event source mappings itself: on every send,
moto would receive the messages and invoke the function, which it cannot run without Docker (the
messages would come back with a receive counted, on their way to the dead-letter queue). Here the
local stack's pollers are what a mapping does (slotguard_local.lambda_api); a mapping in moto is the
record Lambda's API answers from."""

from __future__ import annotations

import sys
from typing import Any

from moto.sqs.exceptions import SQSException
from moto.sqs.models import Queue, SQSBackend

from slotguard.aws.sqs import SQS_CHARACTERS, refused_character

MESSAGE = f"Invalid characters found. Valid unicode characters are {SQS_CHARACTERS}"


class InvalidMessageContents(SQSException):
    def __init__(self) -> None:
        super().__init__("InvalidMessageContents", MESSAGE)


class InvalidAttributeContents(SQSException):
    def __init__(self) -> None:
        super().__init__("InvalidParameterValue", MESSAGE)


def check(body: str, attributes: dict[str, Any] | None) -> None:
    if refused_character(body or "") is not None:
        raise InvalidMessageContents
    for attribute in (attributes or {}).values():
        value = attribute.get("string_value", attribute.get("StringValue"))
        if isinstance(value, str) and refused_character(value) is not None:
            raise InvalidAttributeContents


class PolledByTheLocalStack(dict[str, Any]):
    """A queue's event source mappings, as moto's Lambda API registers them; moto's SQS finds none
    to run on a send (it iterates `items()`)."""

    def items(self) -> Any:
        return iter(())


def apply() -> None:
    """Patch moto's SQS backend in this process."""
    send_message, send_message_batch = SQSBackend.send_message, SQSBackend.send_message_batch
    if getattr(send_message, "checks_sqs_characters", False):
        return

    def checked_send_message(
        self: SQSBackend, queue_name: str, message_body: str, message_attributes: Any = None, **kw: Any
    ) -> Any:
        check(message_body, message_attributes)
        return send_message(self, queue_name, message_body, message_attributes, **kw)

    def checked_send_message_batch(
        self: SQSBackend, queue_name: str, entries: dict[str, dict[str, Any]]
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        refused: list[dict[str, Any]] = []
        kept: dict[str, dict[str, Any]] = {}
        for key, entry in entries.items():
            try:
                check(entry.get("MessageBody", ""), entry.get("MessageAttributes"))
            except SQSException as exc:
                refused.append(
                    {"Id": entry["Id"], "SenderFault": True, "Code": exc.code, "Message": exc.message}
                )
                continue
            kept[key] = entry
        if not kept:
            return [], refused
        messages, failed = send_message_batch(self, queue_name, kept)
        return messages, [*failed, *refused]

    queue_init = Queue.__init__

    def queue_polled_by_the_local_stack(self: Queue, *args: Any, **kwargs: Any) -> None:
        queue_init(self, *args, **kwargs)
        self.lambda_event_source_mappings = PolledByTheLocalStack()

    Queue.__init__ = queue_polled_by_the_local_stack  # type: ignore[method-assign]
    checked_send_message.checks_sqs_characters = True  # type: ignore[attr-defined]
    SQSBackend.send_message = checked_send_message  # type: ignore[method-assign,assignment]
    SQSBackend.send_message_batch = checked_send_message_batch  # type: ignore[method-assign]


def serve(argv: list[str] | None = None) -> None:
    """moto's server (`moto.server` arguments), with the rules applied."""
    from moto.server import main

    apply()
    main(sys.argv[1:] if argv is None else argv)
