"""SQS's character rules, as AWS applies them, on the emulator the tests and `make local` use
(moto's server refuses what AWS refuses), and what the webhook receiver does about them."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import log_records, make_queues

# AWS: "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
REFUSED = ["\x01", "\x1f", "\x00", "\ufffe", "\uffff", "\x0b"]
ACCEPTED = ["\t", "\n", "\r", " ", "\ud7ff", "\ue000", "\ufffd", "\U00010000", "\U0010ffff", "é", "\x7f"]


@pytest.fixture
def queue(aws: str) -> tuple[Any, str]:
    sqs = boto3.client("sqs")
    return sqs, make_queues(sqs, max_receive_count=3, visibility_timeout_s=2).main_url


@pytest.mark.parametrize("char", REFUSED)
def test_the_emulator_refuses_a_body_sqs_refuses(queue: tuple[Any, str], char: str) -> None:
    # Given a body holding a character outside SQS's allowed set
    sqs, url = queue
    # When it is sent, Then SQS's own error comes back and nothing is queued
    with pytest.raises(ClientError) as refused:
        sqs.send_message(QueueUrl=url, MessageBody=f"a{char}b")
    assert refused.value.response["Error"]["Code"] == "InvalidMessageContents"
    assert "Invalid characters found" in refused.value.response["Error"]["Message"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


@pytest.mark.parametrize("char", REFUSED)
def test_the_emulator_refuses_an_attribute_value_sqs_refuses(queue: tuple[Any, str], char: str) -> None:
    sqs, url = queue
    with pytest.raises(ClientError) as refused:
        sqs.send_message(
            QueueUrl=url,
            MessageBody="ok",
            MessageAttributes={"event_type": {"DataType": "String", "StringValue": f"x{char}"}},
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "Invalid characters found" in refused.value.response["Error"]["Message"]


def test_the_emulator_accepts_every_character_sqs_accepts(queue: tuple[Any, str]) -> None:
    sqs, url = queue
    text = "".join(ACCEPTED)
    sqs.send_message(
        QueueUrl=url,
        MessageBody=text,
        MessageAttributes={"event_type": {"DataType": "String", "StringValue": text}},
    )
    [message] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert message["Body"] == text
    assert message["MessageAttributes"]["event_type"]["StringValue"] == text


def test_a_batch_refuses_only_its_bad_entries(queue: tuple[Any, str]) -> None:
    # Given a batch with one entry SQS refuses
    sqs, url = queue
    entries = [{"Id": str(i), "MessageBody": json.dumps({"n": i})} for i in range(3)]
    entries[1]["MessageBody"] = "bad\uffff"
    # When it is sent, Then that entry fails (sender's fault) and the others are queued
    answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert [s["Id"] for s in answer["Successful"]] == ["0", "2"]
    [failed] = answer["Failed"]
    assert (failed["Id"], failed["Code"], failed["SenderFault"]) == ("1", "InvalidMessageContents", True)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ['{"n": 0}', '{"n": 2}']


# -- the webhook receiver ---------------------------------------------------------------------


def test_a_webhook_whose_body_holds_characters_sqs_refuses_still_travels(pipeline: Any) -> None:
    from slotguard_local.events import LambdaContext
    from tests.conftest import signed_headers

    # Given a signed webhook whose JSON strings hold raw U+FFFE and U+FFFF (valid JSON; SQS refuses them)
    org_id, secret = pipeline.new_org()
    data = {"note": "a\ufffeb\uffffc", "emoji": "\U0001f600", "tab": "x\ty"}
    body = json.dumps(
        {"type": "invoice.paid", "timestamp": "2030-01-01T00:00:00Z", "data": data}, ensure_ascii=False
    )
    assert "\uffff" in body
    # When it is posted
    status, answer = pipeline.post(org_id, body.encode(), signed_headers(secret, "msg_nonchar", body))
    # Then it is queued (the same JSON, with those characters escaped) and processed with its data intact
    assert status == 202, answer
    [message] = pipeline.sqs.receive_message(
        QueueUrl=pipeline.queues.main_url, MessageAttributeNames=["All"]
    )["Messages"]
    assert json.loads(message["Body"]) == json.loads(body)
    from slotguard_local.events import sqs_record

    record = sqs_record(message, "arn:aws:sqs:us-east-1:000000000000:q")
    assert pipeline.processor_container()({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["event_data"]["data"]) == ("completed", data)


@pytest.mark.parametrize("char", ["\x01", "\x1f", "\ufffe", "\uffff"])
def test_a_webhook_whose_type_holds_characters_sqs_refuses_is_400_naming_why(
    pipeline: Any, char: str
) -> None:
    from tests.conftest import signed_headers

    # Given a signed webhook whose type holds a character SQS cannot carry in an attribute
    org_id, secret = pipeline.new_org()
    body = json.dumps({"type": f"invoice{char}paid", "data": {}})
    # When it is posted
    status, answer = pipeline.post(org_id, body, signed_headers(secret, "msg_badtype", body))
    # Then it is refused for good (400, not a 503 to retry), saying why, and nothing is queued
    assert status == 400, answer
    assert (answer["error"]["code"], answer["error"]["details"]) == (
        "bad_request",
        {"character": f"U+{ord(char):04X}"},
    )
    assert answer["error"]["message"].startswith(
        f"the payload's 'type' holds U+{ord(char):04X}, a character SQS cannot carry (it takes "
    )
    assert pipeline.queues.depth(pipeline.sqs) == 0


def test_a_webhook_sqs_refuses_for_its_size_once_escaped_is_400_and_not_retried(
    pipeline: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import signed_headers

    # Given a queue created with MaximumMessageSize 256 KiB (SQS's limit until 2025; a queue made
    # since takes 1 MiB unless told otherwise)
    pipeline.sqs.set_queue_attributes(
        QueueUrl=pipeline.queues.main_url, Attributes={"MaximumMessageSize": str(256 * 1024)}
    )
    # And a signed webhook of 240 KB, within the receiver's 256 KiB, that is 80,000 raw U+FFFE:
    # written as escapes for SQS (six bytes for three each) it is 480 KB, past the queue's size
    org_id, secret = pipeline.new_org()
    body = json.dumps({"type": "note", "data": "\ufffe" * 80_000}, ensure_ascii=False)
    assert len(body.encode()) <= 256 * 1024
    # When it is posted
    status, answer = pipeline.post(org_id, body.encode(), signed_headers(secret, "msg_too_big", body))
    # Then the sender is told it is refused for good (400: a 503 would have it retry in vain), with
    # SQS's own reason, and the operator's log says so too
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_request"
    message = answer["error"]["message"]
    assert message.startswith("the queue refused this webhook (InvalidParameterValue: ")
    [warning] = log_records(caplog, "the queue refused the webhook")
    assert (warning.levelname, f"the queue refused this webhook ({vars(warning)['error']})") == (
        "WARNING",
        message,
    )
    assert pipeline.queues.depth(pipeline.sqs) == 0
