"""The AWS adapters' own answers (slotguard.aws), each where `make mutation` found a change no test
noticed: what the booking metrics read from CloudWatch, the RDS token signed without boto3 or by
it, the event source mapping's state as Lambda's API gives it, and what SendInterrupted says."""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest

from slotguard.aws.cloudwatch import BOOKING_COUNTS, BOOKING_LATENCY, BookingMetricSource
from slotguard.aws.rds import generate_auth_token, presign_connect
from slotguard.aws.sqs import SendInterrupted
from slotguard.aws.workers import EventSourceMappingState, WorkerState

HOST, PORT, USER, REGION = "proxy.example.internal", 6432, "slotguard_app", "eu-west-1"


def _stubbed(service: str) -> tuple[Any, Any]:
    """A client of the service that sends nothing, and botocore's Stubber on it: the answers and
    errors the service's own model allows, queued by the test."""
    from botocore.stub import Stubber

    aws = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return aws, Stubber(aws)


def test_the_booking_figures_are_the_sums_of_the_booking_services_own_datapoints(aws: str) -> None:
    # Given booking metrics in CloudWatch (moto's server) for the booking service, and the same
    # metric names for another service in the same namespace
    namespace = f"slotguard-{uuid.uuid4().hex[:8]}"
    cw = boto3.client("cloudwatch")
    now = datetime.now(UTC)

    def put(service: str, name: str, *values: float) -> None:
        cw.put_metric_data(
            Namespace=namespace,
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": "service", "Value": service}],
                    "Timestamp": now - timedelta(seconds=30 + i),
                    "Value": value,
                }
                for i, value in enumerate(values)
            ],
        )

    put("booking", "BookingAttempted", 3, 4)
    put("booking", "BookingCreated", 5)
    put("booking", "BookingConflict", 2)
    put("booking", BOOKING_LATENCY, 10.0, 30.0, 20.0)
    put("webhook_receiver", "BookingAttempted", 1000)
    put("webhook_receiver", BOOKING_LATENCY, 1000.0)
    # When the metrics API reads the last hour
    figures = BookingMetricSource(namespace).read(timedelta(hours=1))
    # Then each count is the sum of the booking service's datapoints only, a count with no
    # datapoint is 0, and the latency is given as its sum and its sample count
    assert figures == {
        "BookingAttempted": 7.0,
        "BookingCreated": 5.0,
        "BookingConflict": 2.0,
        "BookingBusy": 0.0,
        f"{BOOKING_LATENCY}.sum": 60.0,
        f"{BOOKING_LATENCY}.count": 3.0,
    }
    assert set(BOOKING_COUNTS) < set(figures)


@pytest.fixture
def tokyo_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is not UTC (a developer's machine)."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_booking_figures_are_read_for_the_last_span_whatever_the_local_time_zone(
    aws: str, tokyo_local_time: None
) -> None:
    # Given a booking counted in CloudWatch a minute ago, read where local time is UTC+9
    namespace = f"slotguard-{uuid.uuid4().hex[:8]}"
    boto3.client("cloudwatch").put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": "BookingCreated",
                "Dimensions": [{"Name": "service", "Value": "booking"}],
                "Timestamp": datetime.now(UTC) - timedelta(minutes=1),
                "Value": 1,
            }
        ],
    )
    # When the last hour is read, then the booking is in it (the range is taken in UTC)
    assert BookingMetricSource(namespace).read(timedelta(hours=1))["BookingCreated"] == 1.0


def test_the_booking_figures_add_up_every_datapoint_cloudwatch_answers() -> None:
    from botocore.stub import ANY

    # Given CloudWatch answering a range with two datapoints (it may round the start down to a
    # period boundary, so one period spanning the range can come back as two)
    cw, stub = _stubbed("cloudwatch")
    now = datetime.now(UTC)
    for name in BOOKING_COUNTS:
        points = [{"Timestamp": now, "Sum": 2.0}, {"Timestamp": now, "Sum": 3.0}]
        stub.add_response(
            "get_metric_statistics", {"Datapoints": points}, {**_range_params(ANY), "MetricName": name}
        )
    points = [
        {"Timestamp": now, "Sum": 40.0, "SampleCount": 2.0},
        {"Timestamp": now, "Sum": 5.0, "SampleCount": 1.0},
    ]
    stub.add_response(
        "get_metric_statistics", {"Datapoints": points}, {**_range_params(ANY), "MetricName": BOOKING_LATENCY}
    )
    # When the figures are read
    with stub:
        figures = BookingMetricSource("slotguard", cloudwatch=cw).read(timedelta(hours=1))
    # Then each is the sum over the datapoints
    assert figures == {
        **dict.fromkeys(BOOKING_COUNTS, 5.0),
        f"{BOOKING_LATENCY}.sum": 45.0,
        f"{BOOKING_LATENCY}.count": 3.0,
    }


def _range_params(any_: Any) -> dict[str, Any]:
    return {
        "Namespace": "slotguard",
        "Dimensions": [{"Name": "service", "Value": "booking"}],
        "StartTime": any_,
        "EndTime": any_,
        "Period": 3600,
        "Statistics": any_,
    }


def _token_fields(token: str) -> tuple[str, dict[str, str]]:
    where, _, query = token.partition("/?")
    return where, {k: v[0] for k, v in parse_qs(query).items()}


def _signed_by(token: str, access_key: str, secret_key: str, session_token: str | None) -> bool:
    """The token is what presign_connect makes with these credentials at the token's own date."""
    _, fields = _token_fields(token)
    at = datetime.strptime(fields["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    expected = presign_connect(
        HOST,
        PORT,
        USER,
        REGION,
        access_key=access_key,
        secret_key=secret_key,
        session_token=session_token,
        now=at,
    )
    return token == expected


@pytest.mark.parametrize("session_token", [None, "IQoJb3JpZ2luX2VjEJr//////////wEaCWV1LXdlc3QtMSJH+/=="])
def test_credentials_in_the_environment_sign_the_token_without_boto3(
    session_token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Lambda's credentials in the environment, and no boto3 to import (a function that talks
    # to no AWS service never imports it: docs/decisions.md)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    if session_token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", session_token)
    else:
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setitem(sys.modules, "boto3", None)  # `import boto3` raises ImportError
    # When the database connection asks for a token
    token = generate_auth_token(HOST, PORT, USER, REGION)
    # Then it is signed with those credentials, the session token carried when there is one
    where, fields = _token_fields(token)
    assert where == f"{HOST}:{PORT}"
    assert fields["DBUser"] == USER
    assert fields["X-Amz-Credential"].startswith("ASIAENVKEY/")
    assert fields.get("X-Amz-Security-Token") == session_token
    assert _signed_by(token, "ASIAENVKEY", "env-secret", session_token)


def _profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer's profile (credentials and config files), no region configured."""
    credentials, config = tmp_path / "credentials", tmp_path / "config"
    credentials.write_text(
        "[dev]\naws_access_key_id = AKIAPROFILEKEY\naws_secret_access_key = profile-secret\n"
    )
    config.write_text("[profile dev]\noutput = json\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "dev")
    for name in ("AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # boto3.client's session reads them afresh


def test_without_keys_in_the_environment_boto3_signs_with_the_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a developer's profile and no keys in the environment
    _profile(monkeypatch, tmp_path)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    # When the database connection asks for a token
    token = generate_auth_token(HOST, PORT, USER, REGION)
    # Then boto3 signed it with the profile's keys, for this host, port, user and region
    where, fields = _token_fields(token)
    assert where == f"{HOST}:{PORT}"
    assert fields["X-Amz-Credential"].startswith(f"AKIAPROFILEKEY/{fields['X-Amz-Date'][:8]}/{REGION}/")
    assert _signed_by(token, "AKIAPROFILEKEY", "profile-secret", None)


def test_half_a_key_pair_in_the_environment_is_never_signed_without_its_other_half(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from botocore.exceptions import PartialCredentialsError

    # Given a profile, and only a secret key in the environment
    _profile(monkeypatch, tmp_path)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    # When the database connection asks for a token
    token = generate_auth_token(HOST, PORT, USER, REGION)
    # Then boto3 signed it with the profile's keys (a secret without its key id is no credential)
    assert _signed_by(token, "AKIAPROFILEKEY", "profile-secret", None)
    # And given only a key id, boto3 refuses the partial credentials: no token signed with a
    # missing secret (RDS would refuse it as a wrong password)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAENVKEY")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with pytest.raises(PartialCredentialsError):
        generate_auth_token(HOST, PORT, USER, REGION)


MAPPING = "00000000-0000-0000-0000-000000000002"


def test_the_mapping_state_carries_every_field_lambda_gives() -> None:
    # Given an event source mapping as GetEventSourceMapping describes it, then one without a State
    lam, stub = _stubbed("lambda")
    answer = {
        "UUID": MAPPING,
        "State": "Enabled",
        "BatchSize": 7,
        "ScalingConfig": {"MaximumConcurrency": 5},
        "MaximumBatchingWindowInSeconds": 3,
        "LastProcessingResult": "OK",
    }
    with stub:
        stub.add_response("get_event_source_mapping", answer, {"UUID": MAPPING})
        stub.add_response("get_event_source_mapping", {"UUID": MAPPING}, {"UUID": MAPPING})
        source = EventSourceMappingState(MAPPING, lam)
        # When the metrics API reads it
        # Then each field is Lambda's, from the control plane
        assert source.read() == WorkerState(
            state="Enabled",
            batch_size=7,
            maximum_concurrency=5,
            batching_window_s=3,
            last_processing_result="OK",
            source="lambda",
        )
        # And a mapping that names no state is Unknown (not Unavailable: nothing says it stopped)
        assert source.read() == WorkerState(state="Unknown", source="lambda")


def test_an_unreadable_mapping_names_the_error_code_else_the_exception() -> None:
    from botocore.exceptions import EndpointConnectionError

    # Given Lambda's API refusing with a code its model does not know (so the error is a plain
    # ClientError, not a class named for the code), then unreachable (no code at all)
    lam, stub = _stubbed("lambda")
    with stub:
        stub.add_client_error("get_event_source_mapping", "SlowDown", http_status_code=503)
        first = EventSourceMappingState(MAPPING, lam).read()
    unreachable = EventSourceMappingState(MAPPING, lam)
    lam.get_event_source_mapping = _raises(EndpointConnectionError(endpoint_url="https://lambda.invalid"))
    second = unreachable.read()
    # Then the state is Unknown, and the reason is the error code, else the exception's type
    assert first == WorkerState(
        state="Unknown", source=f"lambda:{MAPPING}", last_processing_result="SlowDown"
    )
    assert second.state == "Unknown"
    assert second.last_processing_result == "EndpointConnectionError"


def _raises(exc: Exception) -> Any:
    def call(**_: Any) -> Any:
        raise exc

    return call


def test_an_interrupted_send_says_after_how_many_messages_and_keeps_the_cause() -> None:
    # Given SQS failing as a whole after two messages were answered
    cause = ConnectionResetError("reset by peer")
    # When the adapter reports it
    interrupted = SendInterrupted([None, "InvalidMessageContents: no"], cause)
    # Then the redrive can tell what was answered, and log why the rest was not sent
    assert interrupted.results == [None, "InvalidMessageContents: no"]
    assert interrupted.cause is cause
    assert str(interrupted) == "SQS failed after 2 messages: ConnectionResetError"


def test_the_local_signer_dates_the_token_in_utc_whatever_the_local_time_zone(
    tokyo_local_time: None,
) -> None:
    # Given a process whose local time is UTC+9
    # When a token is signed without a given time
    token = presign_connect(HOST, PORT, USER, REGION, access_key="AKIAKEY", secret_key="secret")
    # Then it is dated now in UTC (SigV4 dates are UTC: RDS would refuse one nine hours ahead)
    _, fields = _token_fields(token)
    signed_at = datetime.strptime(fields["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 60


def _store(**kwargs: Any) -> Any:
    from slotguard.aws.secrets import WebhookSecretStore

    return WebhookSecretStore(f"test-{uuid.uuid4().hex[:8]}/webhooks/", max_age_s=0, **kwargs)


def test_an_unreachable_secrets_manager_is_unavailable_not_an_unknown_org(aws: str) -> None:
    from botocore.config import Config

    from slotguard.aws.secrets import SecretStoreUnavailable

    # Given Secrets Manager unreachable (nothing listens on its endpoint)
    sm = boto3.client(
        "secretsmanager",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = _store(sm=sm, unknown_ttl_s=60)
    # When a webhook's org is looked up, then the store says it cannot answer (the receiver
    # answers 503, the sender retries), never that the org has no secret (401, dropped)
    with pytest.raises(SecretStoreUnavailable):
        store.active_secrets(str(uuid.uuid4()))


def test_an_unknown_org_is_remembered_for_a_ttl_under_a_second(aws: str) -> None:
    # Given a store remembering unknown orgs for half a second, and an org without a secret
    now = [100.0]
    store = _store(unknown_ttl_s=0.5, clock=lambda: now[0])
    org = str(uuid.uuid4())
    assert store.active_secrets(org) is None
    # When its secret is made a moment later
    secret = store.rotate(org)
    now[0] += 0.2
    # Then within the half second it is still unknown; after it, its secret is read
    assert store.active_secrets(org) is None
    now[0] += 0.4
    assert store.active_secrets(org) == [secret]


def test_the_unknown_orgs_memory_is_bounded_and_expired_entries_go_first(aws: str) -> None:
    # Given a store remembering at most 3 unknown orgs for 10 seconds
    now = [0.0]
    store = _store(unknown_ttl_s=10, clock=lambda: now[0])
    store.MAX_UNKNOWN = 3
    orgs = [str(uuid.uuid4()) for _ in range(4)]
    for org in orgs[:3]:
        assert store.active_secrets(org) is None
    # When the first gets a secret, and a fourth unknown org comes while the 3 are unexpired
    secret = store.rotate(orgs[0])
    assert store.active_secrets(orgs[3]) is None
    # Then the memory was emptied (no expired entry to drop), so the first is read again
    assert store.active_secrets(orgs[0]) == [secret]

    # Given 2 remembered orgs at most, one until t=20 and one until t=25
    store = _store(unknown_ttl_s=10, clock=lambda: now[0])
    store.MAX_UNKNOWN = 2
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    now[0] = 10.0
    store.active_secrets(first)
    now[0] = 15.0
    store.active_secrets(second)
    secret = store.rotate(second)
    # When a third unknown org comes at t=20, when the first expires
    now[0] = 20.0
    assert store.active_secrets(third) is None
    # Then only the expired first was dropped: the second is still remembered as unknown
    now[0] = 21.0
    assert store.active_secrets(second) is None


def test_the_admin_url_defaults_to_ssl_the_standard_port_and_the_slotguard_database(aws: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    from slotguard.aws.secrets import database_admin_url

    # Given an RDS master secret that names no port and no database
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(
        Name=f"test-{uuid.uuid4().hex[:8]}/master",
        SecretString=json.dumps({"host": "db.example.internal", "username": "master", "password": "pw"}),
    )["ARN"]
    # When the migrations build their URL from it
    url = conninfo_to_dict(database_admin_url(arn, sm=sm))
    # Then it is TLS-only, on PostgreSQL's port, to the slotguard database
    assert url == {
        "host": "db.example.internal",
        "port": "5432",
        "user": "master",
        "password": "pw",
        "dbname": "slotguard",
        "sslmode": "require",
    }


def test_a_batch_refused_whole_in_the_query_protocols_form_is_sent_message_by_message() -> None:
    from botocore.stub import ANY

    from slotguard.aws.sqs import OutgoingWebhook, WebhookQueue

    # Given SQS refusing a batch as a whole, its code in the query protocol's form
    # ("AWS.SimpleQueueService.BatchRequestTooLong"), then taking each message alone
    sqs, stub = _stubbed("sqs")
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/webhooks"
    stub.add_client_error(
        "send_message_batch", "AWS.SimpleQueueService.BatchRequestTooLong", http_status_code=400
    )
    for i in range(2):
        stub.add_response(
            "send_message",
            {"MessageId": f"m{i}"},
            {"QueueUrl": url, "MessageBody": ANY, "MessageAttributes": ANY},
        )
    messages = [OutgoingWebhook(body="{}", org_id="o", webhook_id=f"w{i}", event_type="t") for i in range(2)]
    # When the redrive sends them
    with stub:
        answers = WebhookQueue(url, sqs).send_many(messages)
    # Then each message was sent alone and taken
    assert answers == [None, None]
    stub.assert_no_pending_responses()


def _poller_file(tmp_path: Path, data: dict[str, Any]) -> Any:
    from slotguard.aws.workers import PollerStateFile

    path = tmp_path / "worker-state.json"
    path.write_text(json.dumps(data))
    return PollerStateFile(str(path))


def test_the_local_pollers_state_file_read_missing_stale_and_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slotguard.aws.workers import PollerStateFile

    # Given no state file: the poller is unavailable, said by the local poller
    assert PollerStateFile(str(tmp_path / "none.json")).read() == WorkerState(
        state="Unavailable", source="local-poller"
    )
    # Given a file naming no state and no update time: stale, so unavailable
    assert _poller_file(tmp_path, {}).read().state == "Unavailable"
    # Given a file written exactly 30 s ago (the bound) naming no state: not yet stale, Unknown
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    assert _poller_file(tmp_path, {"updated_at": 1_699_999_970.0}).read().state == "Unknown"
    # Given one written 31 s ago: stale, so unavailable, whatever it names
    stale = _poller_file(tmp_path, {"updated_at": 1_699_999_969.0, "state": "Enabled"}).read()
    assert stale.state == "Unavailable"


def test_the_queue_age_is_the_latest_maximum_of_that_queue_in_the_last_ten_minutes(aws: str) -> None:
    from slotguard.aws.cloudwatch import QueueAgeMetric

    # Given the age of the oldest message as SQS publishes it (namespace AWS/SQS, per QueueName):
    # for this queue 3 and 4 minutes ago and a quarter of an hour ago, for another queue now
    queue, other = f"webhooks-{uuid.uuid4().hex[:8]}", f"webhooks-{uuid.uuid4().hex[:8]}"
    cw = boto3.client("cloudwatch")
    now = datetime.now(UTC)
    old = f"webhooks-{uuid.uuid4().hex[:8]}"  # its only datapoint ten and a half minutes ago
    points = ((queue, 4, 240.0), (queue, 3, 90.0), (queue, 15, 900.0), (other, 0, 5000.0), (old, 10.5, 7.0))
    for name, ago, age in points:
        cw.put_metric_data(
            Namespace="AWS/SQS",
            MetricData=[
                {
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": [{"Name": "QueueName", "Value": name}],
                    "Timestamp": now - timedelta(minutes=ago),
                    "Value": age,
                }
            ],
        )
    # When the queue health reads it
    metric = QueueAgeMetric()
    # Then it is this queue's latest minute within the last ten, and None for a queue with none
    assert metric.oldest_message_age_s(queue) == 90.0
    assert metric.oldest_message_age_s(f"webhooks-{uuid.uuid4().hex[:8]}") is None
    assert metric.oldest_message_age_s(old) is None


def test_the_queue_age_is_read_for_the_last_ten_minutes_whatever_the_local_time_zone(
    aws: str, tokyo_local_time: None
) -> None:
    from slotguard.aws.cloudwatch import QueueAgeMetric

    # Given a queue's age published a minute ago, read where local time is UTC+9
    queue = f"webhooks-{uuid.uuid4().hex[:8]}"
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": queue}],
                "Timestamp": datetime.now(UTC) - timedelta(minutes=1),
                "Value": 42.0,
            }
        ],
    )
    # When it is read, then it is found (the ten minutes are taken in UTC)
    assert QueueAgeMetric().oldest_message_age_s(queue) == 42.0


def test_a_queue_depth_counts_visible_in_flight_and_delayed_messages(aws: str) -> None:
    from slotguard.aws.sqs import WebhookQueue

    # Given a queue holding one message delayed, and two visible of which one is received
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"webhooks-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=600)["Messages"]
    # When the queue health reads its depth
    depth = WebhookQueue(url, sqs).depth()
    # Then each count is its own
    assert (depth.visible, depth.in_flight, depth.delayed) == (1, 1, 1)


def _secret_value(store: Any, org: str, value: dict[str, Any]) -> None:
    store._sm.create_secret(Name=store.name_for(org), SecretString=json.dumps(value))


def test_expiry_times_with_an_offset_without_one_or_unreadable(aws: str) -> None:
    from slotguard.aws.secrets import fingerprint

    # Given an org's secrets whose previous ones expire: at 08:00+09:00 (23:00 UTC the day
    # before), at 23:45 written without an offset (UTC), and at a time nobody can read
    now = datetime(2029, 12, 31, 23, 30, tzinfo=UTC)
    store = _store(wallclock=lambda: now)
    org = str(uuid.uuid4())
    current, offset, naive, unreadable = (f"whsec_{name}" for name in ("cur", "off", "naive", "bad"))
    expires_at = {
        fingerprint(offset): "2030-01-01T08:00:00+09:00",
        fingerprint(naive): "2029-12-31T23:45:00",
        fingerprint(unreadable): "the day after tomorrow",
    }
    _secret_value(store, org, {"secrets": [current, offset, naive, unreadable], "expires_at": expires_at})
    # When the receiver reads them at 23:30 UTC
    # Then the one with an offset has expired at its own instant, the one without is still
    # valid (read as UTC), the unreadable one is treated as expired
    assert store.active_secrets(org) == [current, naive]


def test_a_rotation_makes_a_secret_of_32_random_bytes(aws: str) -> None:
    import base64

    # Given an org's secret rotated twice
    store = _store()
    org = str(uuid.uuid4())
    first, second = store.rotate(org), store.rotate(org)
    # Then each is whsec_ and the base64 of 32 bytes (256 bits, the size of HMAC-SHA256's key), and
    # they differ
    for secret in (first, second):
        prefix, _, key = secret.partition("_")
        assert prefix == "whsec"
        assert len(base64.b64decode(key, validate=True)) == 32
    assert first != second


def test_a_kept_secret_is_refused_from_the_instant_it_expires(aws: str) -> None:
    def fingerprint(secret: str) -> str:
        # the stored format (README: the first 16 hex digits of the secret's SHA-256), as any release wrote it
        return hashlib.sha256(secret.encode()).hexdigest()[:16]

    # Given an org whose kept secret expires at 12:00:00 UTC, and another kept one a microsecond later
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    store = _store(wallclock=lambda: now)
    org = str(uuid.uuid4())
    current, at_noon, just_after = "whsec_now", "whsec_noon", "whsec_after"
    expires_at = {
        fingerprint(at_noon): "2030-01-01T12:00:00+00:00",
        fingerprint(just_after): "2030-01-01T12:00:00.000001Z",
    }
    _secret_value(store, org, {"secrets": [current, at_noon, just_after], "expires_at": expires_at})
    # When the receiver reads them at 12:00:00 exactly
    # Then the one expiring now is no longer accepted; the one a microsecond later still is
    assert store.active_secrets(org) == [current, just_after]


def test_a_forced_re_read_is_allowed_again_exactly_at_the_interval(aws: str) -> None:
    # Given an org whose secrets were re-read past the cache at t=0
    now = [0.0]
    store = _store(clock=lambda: now[0])
    org = str(uuid.uuid4())
    secret = store.rotate(org)
    assert store.refreshed_secrets(org) == [secret]
    # When forged signatures ask again within the interval, then there is no re-read
    now[0] = store.REFRESH_MIN_INTERVAL_S - 0.5
    assert store.refreshed_secrets(org) is None
    # And when the interval has passed (exactly), the secrets are re-read
    now[0] = store.REFRESH_MIN_INTERVAL_S
    assert store.refreshed_secrets(org) == [secret]


def test_forced_re_reads_are_remembered_for_a_bounded_number_of_orgs(aws: str) -> None:
    # Given a store remembering the forced re-reads of 2 orgs at most
    store = _store(clock=lambda: 0.0)
    store.MAX_REFRESHED = 2
    orgs = [str(uuid.uuid4()) for _ in range(3)]
    secrets = [store.rotate(org) for org in orgs]
    assert store.refreshed_secrets(orgs[0]) == [secrets[0]]
    assert store.refreshed_secrets(orgs[1]) == [secrets[1]]
    # When a third org is re-read at the same moment
    assert store.refreshed_secrets(orgs[2]) == [secrets[2]]
    # Then the memory was emptied first: the first org may be re-read again at once
    assert store.refreshed_secrets(orgs[0]) == [secrets[0]]


def test_a_forced_re_read_of_an_unknown_org_remembers_it_as_unknown(aws: str) -> None:
    # Given a store remembering unknown orgs for a minute
    now = [0.0]
    store = _store(unknown_ttl_s=60, clock=lambda: now[0])
    org = str(uuid.uuid4())
    # When a forged signature makes it re-read an org that has no secret
    assert store.refreshed_secrets(org) is None
    # Then the org is remembered as unknown: its secret made meanwhile is not read within the TTL
    store.rotate(org)
    now[0] = 30.0
    assert store.active_secrets(org) is None


def _edge_secret(value: str) -> tuple[Any, str]:
    """A secret in moto's Secrets Manager, as the edge's: the client and its ARN."""
    sm = boto3.client("secretsmanager")
    return sm, sm.create_secret(Name=f"edge-{uuid.uuid4().hex[:8]}", SecretString=value)["ARN"]


def test_the_edge_secret_is_read_again_once_its_cached_values_are_five_minutes_old(aws: str) -> None:
    from slotguard.aws.secrets import EdgeSecret

    # Given an edge secret read at t=1000, then changed twice (its first value neither current
    # nor previous any more)
    first, second, third = (uuid.uuid4().hex * 2 for _ in range(3))
    sm, arn = _edge_secret(first)
    now = [1000.0]
    edge = EdgeSecret(arn, sm=sm, clock=lambda: now[0])
    assert edge.matches(first)
    sm.put_secret_value(SecretId=arn, SecretString=second)
    sm.put_secret_value(SecretId=arn, SecretString=third)
    # When the first value is presented just before its cached values are 300 s old
    now[0] = 1299.999
    # Then it is still accepted (read from the cache)
    assert edge.matches(first)
    # When it is presented once they are 300 s old, Then they are read again: it is refused
    now[0] = 1300.0
    assert not edge.matches(first)
    # And the two values Secrets Manager now holds are accepted
    assert edge.matches(third) and edge.matches(second)


EDGE_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:edge-AbCdEf"


def _version(value: str, stage: str) -> dict[str, Any]:
    return {
        "ARN": EDGE_ARN,
        "Name": "edge",
        "VersionId": "v" * 32,
        "SecretString": value,
        "VersionStages": [stage],
    }


def test_the_edge_secrets_previous_version_unreadable_is_unavailable_not_skipped() -> None:
    from slotguard.aws.secrets import EdgeSecret, SecretStoreUnavailable

    # Given Secrets Manager answering the current version and throttling the read of the previous
    sm, stub = _stubbed("secretsmanager")
    with stub:
        stub.add_response("get_secret_value", _version("c" * 48, "AWSCURRENT"))
        stub.add_client_error("get_secret_value", "ThrottlingException", http_status_code=400)
        # When the edge's header is checked, Then the secret is unavailable, naming the error (a
        # previous value skipped would refuse what CloudFront still sends during a change)
        with pytest.raises(SecretStoreUnavailable, match="ThrottlingException"):
            EdgeSecret(EDGE_ARN, sm=sm).matches("c" * 48)


def test_the_edge_secret_missing_or_unreachable_is_unavailable_with_the_cause() -> None:
    from botocore.exceptions import EndpointConnectionError

    from slotguard.aws.secrets import EdgeSecret, SecretStoreUnavailable

    # Given Secrets Manager that has no such secret (its current version not found)
    sm, stub = _stubbed("secretsmanager")
    with stub:
        stub.add_client_error("get_secret_value", "ResourceNotFoundException", http_status_code=400)
        # When the header is checked, Then unavailable, naming Secrets Manager's error (not "empty")
        with pytest.raises(SecretStoreUnavailable, match="ResourceNotFoundException"):
            EdgeSecret(EDGE_ARN, sm=sm).matches("c" * 48)
    # Given Secrets Manager unreachable, Then unavailable, naming the endpoint
    sm.get_secret_value = _raises(EndpointConnectionError(endpoint_url="https://secretsmanager.invalid"))
    with pytest.raises(SecretStoreUnavailable, match=r"https://secretsmanager\.invalid"):
        EdgeSecret(EDGE_ARN, sm=sm).matches("c" * 48)


def test_a_message_weighs_its_body_and_each_attributes_name_type_and_value_in_utf8() -> None:
    from slotguard.aws.sqs import OutgoingWebhook, message_bytes

    # Given a message whose body holds a 2-byte and a 4-byte character, and whose event type one
    # 2-byte character (SQS counts bytes, not characters)
    org_id, webhook_id = "0" * 8 + "-0000-0000-0000-" + "0" * 12, "msg_1"
    message = OutgoingWebhook(body='{"a":"é😀"}', org_id=org_id, webhook_id=webhook_id, event_type="payé")
    # When it is weighed, Then it is the body's bytes, and per attribute its name, "String" and value
    body = 8 + 2 + 4
    attributes = (6 + 6 + 36) + (10 + 6 + 5) + (10 + 6 + 5)
    assert message_bytes(message) == body + attributes == 104


def test_a_batch_of_no_message_or_more_than_ten_is_refused_before_sqs_is_called() -> None:
    from types import SimpleNamespace

    from slotguard.aws.sqs import OutgoingWebhook, WebhookQueue

    # Given a queue whose SQS client is never to be called
    sqs = SimpleNamespace(send_message_batch=_raises(AssertionError("SQS called")))
    queue = WebhookQueue("https://sqs.invalid/1/q", sqs=sqs)
    one = OutgoingWebhook(body="{}", org_id="o", webhook_id="w", event_type="t")
    # When a batch of none or of 11 is sent, Then it is refused, saying what a batch holds
    for batch in ([], [one] * 11):
        with pytest.raises(ValueError, match=r"^a batch holds 1\.\.10 messages$"):
            queue.send_batch(batch)


def test_a_refusal_without_a_message_is_answered_with_its_code_alone() -> None:
    from botocore.stub import ANY

    from slotguard.aws.sqs import OutgoingWebhook, WebhookQueue

    # Given SQS taking the first of two messages and refusing the second with a code and no
    # message (BatchResultErrorEntry's Message is optional)
    sqs, stub = _stubbed("sqs")
    stub.add_response(
        "send_message_batch",
        {
            "Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "0" * 32}],
            "Failed": [{"Id": "1", "SenderFault": True, "Code": "InvalidParameterValue"}],
        },
        {"QueueUrl": QUEUE_URL, "Entries": ANY},
    )
    one = OutgoingWebhook(body="{}", org_id="o", webhook_id="w", event_type="t")
    # When the batch is sent, Then the first is taken and the second's reason is its code alone
    with stub:
        answers = WebhookQueue(QUEUE_URL, sqs=sqs).send_batch([one, one])
    assert answers == [None, "InvalidParameterValue: "]


QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/1/q"


def test_a_message_sqs_neither_took_nor_refused_is_answered_as_not_said() -> None:
    from botocore.stub import ANY

    from slotguard.aws.sqs import OutgoingWebhook, WebhookQueue

    # Given SQS answering a batch of two with the first taken and nothing said of the second
    sqs, stub = _stubbed("sqs")
    stub.add_response(
        "send_message_batch",
        {"Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "0" * 32}], "Failed": []},
        {"QueueUrl": QUEUE_URL, "Entries": ANY},
    )
    one = OutgoingWebhook(body="{}", org_id="o", webhook_id="w", event_type="t")
    # When it is sent, Then the second is not counted as taken: its answer says SQS did not say
    with stub:
        answers = WebhookQueue(QUEUE_URL, sqs=sqs).send_batch([one, one])
    assert answers == [None, "NoAnswer: SQS did not say"]


def test_sqs_failing_on_the_second_batch_interrupts_with_the_first_batchs_answers_and_the_cause() -> None:
    from botocore.exceptions import ClientError
    from botocore.stub import ANY

    from slotguard.aws.sqs import OutgoingWebhook, SendInterrupted, WebhookQueue

    # Given 12 messages (two batches) and SQS taking the first batch, then throttling
    sqs, stub = _stubbed("sqs")
    taken = [{"Id": str(i), "MessageId": f"m{i}", "MD5OfMessageBody": "0" * 32} for i in range(10)]
    stub.add_response(
        "send_message_batch", {"Successful": taken, "Failed": []}, {"QueueUrl": QUEUE_URL, "Entries": ANY}
    )
    stub.add_client_error("send_message_batch", "ThrottlingException", http_status_code=400)
    one = OutgoingWebhook(body="{}", org_id="o", webhook_id="w", event_type="t")
    # When they are sent
    with stub, pytest.raises(SendInterrupted) as raised:
        WebhookQueue(QUEUE_URL, sqs=sqs).send_many([one] * 12)
    # Then the interruption holds the first ten answers (taken) and SQS's error as its cause
    assert raised.value.results == [None] * 10
    assert isinstance(raised.value.cause, ClientError)
    assert raised.value.cause.response["Error"]["Code"] == "ThrottlingException"
    assert str(raised.value) == "SQS failed after 10 messages: ThrottlingException"


class _RecordingSqs:
    """An SQS client that takes every batch and keeps the number of messages in each."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.batches.append(len(Entries))
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def _weighing(total: int) -> Any:
    """A message whose size, as SQS counts it, is exactly `total` bytes."""
    from slotguard.aws.sqs import OutgoingWebhook, message_bytes

    empty = OutgoingWebhook(body="", org_id="o", webhook_id="w", event_type="t")
    message = OutgoingWebhook(
        body="x" * (total - message_bytes(empty)), org_id="o", webhook_id="w", event_type="t"
    )
    assert message_bytes(message) == total
    return message


def test_batches_are_filled_to_exactly_the_byte_limit_and_a_message_of_exactly_the_limit_is_sent() -> None:
    from slotguard.aws.sqs import SQS_MAX_BATCH_BYTES, SQS_MAX_MESSAGE_BYTES, WebhookQueue

    # Given four messages, the first two and the last two each adding up to exactly the batch limit
    sqs = _RecordingSqs()
    queue = WebhookQueue(QUEUE_URL, sqs=sqs)
    third = SQS_MAX_BATCH_BYTES // 3
    messages = [_weighing(third), _weighing(SQS_MAX_BATCH_BYTES - third)] * 2
    # When they are sent, Then they go in two full batches of two, each taken
    assert queue.send_many(messages) == [None] * 4
    assert sqs.batches == [2, 2]
    # Given a message of exactly the largest size SQS takes, When it is sent, Then it is, alone
    sqs.batches.clear()
    assert queue.send_many([_weighing(SQS_MAX_MESSAGE_BYTES)]) == [None]
    assert sqs.batches == [1]
    # And one byte more is never sent: it is answered as too long
    [answer] = queue.send_many([_weighing(SQS_MAX_MESSAGE_BYTES + 1)])
    assert (
        answer
        == f"MessageTooLong: the message is {SQS_MAX_MESSAGE_BYTES + 1} bytes, SQS takes at most 1048576"
    )
    assert sqs.batches == [1]


def test_only_whsec_strings_in_a_list_are_an_orgs_secrets_whatever_else_the_value_holds(aws: str) -> None:
    # Given org secrets in Secrets Manager written by hand, in shapes the tooling never writes
    store = _store()
    sm = boto3.client("secretsmanager")
    good = "whsec_" + "A" * 43
    values = {
        "a list beside other entries": {"secrets": [good, "plain-text-key", 12, None, "WHSEC_x"]},
        "secrets not a list": {"secrets": good},
        "secrets a mapping": {"secrets": {good: "current"}},
        "no secrets key": {"secret": [good]},
        "not an object": [good],
    }
    orgs = {}
    for what, value in values.items():
        orgs[what] = str(uuid.uuid4())
        sm.create_secret(Name=store.name_for(orgs[what]), SecretString=json.dumps(value))
    # When each org's active secrets are read
    # Then only the whsec_ strings of a `secrets` list are: anything else never verifies a signature
    assert store.active_secrets(orgs["a list beside other entries"]) == [good]
    for what in ("secrets not a list", "secrets a mapping", "no secrets key", "not an object"):
        assert store.active_secrets(orgs[what]) is None, what


def test_a_queue_age_cloudwatch_does_not_answer_is_unreadable_not_absent() -> None:
    from botocore.exceptions import EndpointConnectionError

    from slotguard.aws.cloudwatch import MetricUnreadable, QueueAgeMetric

    # Given CloudWatch throttling the read, then unreachable
    cw, stub = _stubbed("cloudwatch")
    stub.add_client_error("get_metric_statistics", "Throttling", http_status_code=400)
    # When the queue's age is read, Then it is unreadable, naming the error code (no datapoint
    # would be None: nothing waits)
    with stub, pytest.raises(MetricUnreadable) as throttled:
        QueueAgeMetric(cw).oldest_message_age_s("webhooks")
    assert throttled.value.reason == "Throttling"
    # And unreachable, naming the exception
    cw.get_metric_statistics = _raises(EndpointConnectionError(endpoint_url="https://monitoring.invalid"))
    with pytest.raises(MetricUnreadable) as unreachable:
        QueueAgeMetric(cw).oldest_message_age_s("webhooks")
    assert unreachable.value.reason == "EndpointConnectionError"
    assert str(unreachable.value) == "CloudWatch could not be read (EndpointConnectionError)"


def test_a_rotation_whose_read_is_refused_fails_and_creates_nothing() -> None:
    from botocore.exceptions import ClientError

    from slotguard.aws.secrets import WebhookSecretStore

    # Given Secrets Manager refusing to read the org's secret (not: the org has none)
    sm, stub = _stubbed("secretsmanager")
    stub.add_client_error("get_secret_value", "AccessDeniedException", http_status_code=400)
    store = WebhookSecretStore("test/webhooks/", sm=sm)
    # When the org's secret is rotated, Then the refusal is raised as it came, and no secret is
    # created in place of the one it could not read (the stub takes no other call)
    with stub, pytest.raises(ClientError, match="AccessDeniedException"):
        store.rotate(str(uuid.uuid4()))
    stub.assert_no_pending_responses()


def test_content_sqs_refuses_is_message_refused_with_its_code_and_message() -> None:
    from botocore.stub import ANY

    from slotguard.aws.sqs import MessageRefused, WebhookQueue

    # Given SQS refusing a message's content (the sender's fault, never worth a retry)
    sqs, stub = _stubbed("sqs")
    stub.add_client_error(
        "send_message",
        service_error_code="InvalidMessageContents",
        service_message="Invalid binary character '#xFFFE' was found in the message body",
        http_status_code=400,
        expected_params={"QueueUrl": QUEUE_URL, "MessageBody": ANY, "MessageAttributes": ANY},
    )
    # When a webhook is sent, Then it is refused for good, saying SQS's code and message
    with stub, pytest.raises(MessageRefused) as refused:
        WebhookQueue(QUEUE_URL, sqs=sqs).send("{}", org_id="o", webhook_id="w", event_type="t")
    assert str(refused.value) == (
        "InvalidMessageContents: Invalid binary character '#xFFFE' was found in the message body"
    )


def test_a_local_state_file_whose_path_holds_a_colon_is_read_from_that_path(tmp_path: Path) -> None:
    from slotguard.aws.workers import PollerStateFile, worker_state_source

    # Given the local poller's state file at a path with a colon in it
    path = tmp_path / "state:1.json"
    path.write_text(json.dumps({"updated_at": time.time(), "state": "Enabled"}))
    # When WORKER_STATE_SOURCE names it, Then that file is the one read
    source = worker_state_source(f"file:{path}")
    assert isinstance(source, PollerStateFile)
    assert source.read().state == "Enabled"
