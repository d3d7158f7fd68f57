"""The alarms and the dashboard (issue 18, issue 22): each alarm watches a metric the code really
emits (the functions are run in their containers and their EMF output is read), the four numbers the
system promises are watched the way they are stated, and every alarm is tuned on purpose and reaches
a person on the way in and on the way out."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from slotguard.services import booking_metrics, webhook_metrics
from tests.test_infra import CONTEXT, ROOT, main_api_id, main_stage, resources

NAMESPACE = "Slotguard"


def alarms(template: Any) -> dict[str, dict[str, Any]]:
    return {k: a["Properties"] for k, a in resources(template, "AWS::CloudWatch::Alarm").items()}


def alarm(template: Any, name: str) -> dict[str, Any]:
    """The alarm whose logical ID is Observability<name><hash>."""
    found = [
        props
        for logical_id, props in alarms(template).items()
        if logical_id.startswith(f"Observability{name}")
        and len(logical_id) == len(f"Observability{name}") + 8
    ]
    assert len(found) == 1, (name, sorted(alarms(template)))
    return found[0]


def inputs(props: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: (namespace, name, dimensions, statistic, period)."""
    if "MetricName" in props:
        return [
            {
                "namespace": props["Namespace"],
                "name": props["MetricName"],
                "dimensions": {d["Name"]: d["Value"] for d in props.get("Dimensions", [])},
                "stat": props.get("Statistic") or props.get("ExtendedStatistic"),
                "period": props["Period"],
            }
        ]
    return [
        {
            "namespace": m["MetricStat"]["Metric"]["Namespace"],
            "name": m["MetricStat"]["Metric"]["MetricName"],
            "dimensions": {d["Name"]: d["Value"] for d in m["MetricStat"]["Metric"].get("Dimensions", [])},
            "stat": m["MetricStat"]["Stat"],
            "period": m["MetricStat"]["Period"],
        }
        for m in props["Metrics"]
        if "MetricStat" in m
    ]


def expression(props: dict[str, Any]) -> str:
    [expr] = [m["Expression"] for m in props["Metrics"] if m.get("ReturnData", True) and "Expression" in m]
    return str(expr)


# ---------------------------------------------------------------------------------------------
# What the functions emit, read from their own EMF output
# ---------------------------------------------------------------------------------------------


def emf_records(path: Path) -> list[dict[str, Any]]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def emitted_metrics(records: list[dict[str, Any]]) -> dict[tuple[str, str, frozenset[tuple[str, str]]], str]:
    """(namespace, metric, dimensions) -> unit, as CloudWatch extracts them from EMF records."""
    found: dict[tuple[str, str, frozenset[tuple[str, str]]], str] = {}
    for record in records:
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dims = frozenset((d, str(record[d])) for d in dimension_set)
                for metric in directive["Metrics"]:
                    found[(directive["Namespace"], metric["Name"], dims)] = metric["Unit"]
    return found


@pytest.fixture(scope="module")
def emitted(pg: Any, aws: str, tmp_path_factory: pytest.TempPathFactory) -> dict[Any, str]:
    """Every function the alarms watch run in its own container (its environment as the local stack
    and the CDK app give it: POWERTOOLS_SERVICE_NAME per function), through the paths that feed the
    alarms: a booking made, refused on a conflict, busy on a held lock and refused with the database
    unavailable; a webhook processed and one dead-lettered as invalid; a dead-letter queue message
    reconciled and one the reconciler cannot parse."""
    from datetime import UTC, datetime, timedelta

    import boto3

    from slotguard_local.containers import ContainerPool
    from slotguard_local.events import http_api_event, sqs_record
    from slotguard_local.functions import function_environment, handler_path

    metrics_file = tmp_path_factory.mktemp("emf") / "metrics.jsonl"
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"alarms-{uuid.uuid4().hex[:8]}")["QueueUrl"]

    def pool(name: str, **settings: str) -> ContainerPool:
        env = function_environment(name, settings, os.environ, metrics_file)
        return ContainerPool(name, handler_path(name), env, concurrency=1, timeout_s=30)

    org = str(uuid.uuid4())
    claims = {"sub": "alarm-test", "org_id": org}
    when = datetime(2033, 3, 1, 10, tzinfo=UTC)

    def book(fn: ContainerPool, minutes: int = 0) -> int:
        body = {
            "contact_id": str(uuid.uuid4()),
            "scheduled_at": (when + timedelta(minutes=minutes)).isoformat(),
            "duration_minutes": 30,
        }
        event = http_api_event(
            "POST",
            "/appointments",
            headers={"content-type": "application/json"},
            body=json.dumps(body),
            claims=claims,
        )
        return int(fn.invoke(event)["statusCode"])

    booking = pool("booking", DATABASE_URL=pg.app_url, BOOKING_LOCK_WAIT_MS="200")
    unreachable = pool(
        "booking", DATABASE_URL="postgresql://slotguard_app@127.0.0.1:9/slotguard", DB_CONNECT_TIMEOUT_S="1"
    )
    retry = {"WEBHOOK_MAX_ATTEMPTS": "5", "WEBHOOK_BACKOFF_BASE_S": "1", "WEBHOOK_BACKOFF_CAP_S": "2"}
    processor = pool("webhook_processor", DATABASE_URL=pg.app_url, WEBHOOK_QUEUE_URL=queue_url, **retry)
    reconciler = pool("dlq_reconciler", DATABASE_URL=pg.app_url, **retry)
    # The receiver as deployed behind the edge: its secret in Secrets Manager (moto)
    edge_secret = boto3.client("secretsmanager").create_secret(
        Name=f"edge-{uuid.uuid4().hex[:8]}", SecretString=uuid.uuid4().hex
    )["ARN"]
    receiver = pool(
        "webhook_receiver",
        WEBHOOK_QUEUE_URL=queue_url,
        WEBHOOK_SECRET_PREFIX=f"alarms/{uuid.uuid4().hex[:8]}/",
        WEBHOOK_EDGE_SECRET_ARN=edge_secret,
    )
    try:
        assert book(booking) == 201
        assert book(booking) == 409
        with psycopg.connect(pg.admin_url) as holder:
            holder.execute(
                "SELECT pg_advisory_xact_lock(k) FROM slotguard.calendar_lock_keys(%s, NULL, %s, %s) k",
                (org, when + timedelta(hours=2), when + timedelta(hours=3)),
            )
            assert book(booking, minutes=120) == 503  # busy: the lock was not free within 200 ms
            holder.rollback()
        assert book(unreachable, minutes=240) == 503  # database_unavailable

        def message(body: str, **attributes: str) -> dict[str, Any]:
            return sqs_record(
                {
                    "MessageId": str(uuid.uuid4()),
                    "ReceiptHandle": uuid.uuid4().hex,
                    "Body": body,
                    "MessageAttributes": {
                        k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                    },
                },
                "arn:aws:sqs:us-east-1:000000000000:alarms",
            )

        def identity() -> dict[str, str]:
            return {"org_id": org, "webhook_id": f"msg_{uuid.uuid4().hex}", "event_type": "appointment.book"}

        data = {
            "contact_id": str(uuid.uuid4()),
            "scheduled_at": "2033-04-01T10:00:00Z",
            "duration_minutes": 30,
        }
        good = json.dumps({"type": "appointment.book", "timestamp": "2033-01-01T00:00:00Z", "data": data})
        answer = processor.invoke(
            {"Records": [message(good, **identity()), message("not json", **identity())]}
        )
        assert answer == {"batchItemFailures": []}, answer
        answer = reconciler.invoke({"Records": [message(good, **identity()), message("{}")]})
        assert len(answer["batchItemFailures"]) == 1, answer  # the unparsable one stays on the queue
        # A webhook posted to the origin's own URL (no edge header)
        posted = http_api_event(
            "POST",
            f"/webhooks/{org}",
            route_key="POST /webhooks/{org_id}",
            path_parameters={"org_id": org},
            headers={"content-type": "application/json"},
            body=good,
        )
        assert receiver.invoke(posted)["statusCode"] == 401
    finally:
        for fn in (booking, unreachable, processor, reconciler, receiver):
            fn.close()
    return emitted_metrics(emf_records(metrics_file))


# Metric names of the application, and the function whose EMF carries each one the alarms read.
EMITTERS = {
    booking_metrics.ATTEMPTED: {"booking"},
    booking_metrics.BUSY: {"booking"},
    booking_metrics.DATABASE_UNAVAILABLE: {"booking"},
    booking_metrics.LATENCY: {"booking"},
    webhook_metrics.PROCESSED: {"webhook_processor"},
    webhook_metrics.DEAD_LETTERED: {"webhook_processor", "dlq_reconciler"},
    webhook_metrics.UNPARSABLE: {"dlq_reconciler"},
    webhook_metrics.REJECTED: {"webhook_receiver"},
}


def test_every_application_alarm_reads_a_metric_the_functions_emit_with_those_dimensions(
    template: Any, emitted: dict[Any, str]
) -> None:
    # Given what the functions printed as EMF while going through the paths the alarms watch
    read = 0
    for logical_id, props in alarms(template).items():
        for metric in inputs(props):
            if metric["namespace"] != NAMESPACE or metric["name"] == "ApiUnauthorized":
                continue  # AWS's own metrics, and the access logs' metric filter (below)
            read += 1
            key = (NAMESPACE, metric["name"], frozenset(metric["dimensions"].items()))
            # Then each metric an alarm reads is one the code emits, under exactly those dimensions
            assert key in emitted, (logical_id, key, sorted(k[1:] for k in emitted))
            # And a count is added up, a duration averaged (or a percentile)
            if emitted[key] == "Count":
                assert metric["stat"] == "Sum", (logical_id, metric)
            else:
                assert emitted[key] == "Milliseconds" and metric["stat"] in ("Average", "p99"), metric
    assert read >= 9
    # And each of the metrics is emitted by the function the alarm names, and only there
    for name, services in EMITTERS.items():
        assert {dict(dims).get("service") for ns, n, dims in emitted if n == name} == services, name


def test_the_401_metric_is_the_access_logs_count_of_refused_tokens(template: Any) -> None:
    # Given the HTTP API's access logs
    api_id = main_api_id(template)
    stage = main_stage(template)
    log_group = stage["Properties"]["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    # Then a metric filter on them counts 401 answers of the JWT-authorized routes into the metric the
    # 401 alarm reads (the webhook route's 401s, bad signatures counted by the receiver, are on the
    # edge's origin API, whose access logs have no such filter)
    [metric_filter] = resources(template, "AWS::Logs::MetricFilter").values()
    props = metric_filter["Properties"]
    assert props["LogGroupName"] == {"Ref": log_group}
    assert props["FilterPattern"] == '{ $.status = "401" }'
    routes = resources(template, "AWS::ApiGatewayV2::Route").values()
    on_main_api = {r["Properties"]["RouteKey"] for r in routes if r["Properties"]["ApiId"] == {"Ref": api_id}}
    assert "POST /webhooks/{org_id}" not in on_main_api
    [transform] = props["MetricTransformations"]
    assert (transform["MetricNamespace"], transform["MetricName"], transform["MetricValue"]) == (
        NAMESPACE,
        "ApiUnauthorized",
        "1",
    )
    unauthorized = alarm(template, "Unauthorized")
    names = {(m["namespace"], m["name"]): m for m in inputs(unauthorized)}
    assert names[(NAMESPACE, "ApiUnauthorized")]["dimensions"] == {}
    assert names[("AWS/ApiGateway", "Count")]["dimensions"] == {"ApiId": {"Ref": api_id}}
    assert "FILL(u, 0) / c" in expression(unauthorized)


# ---------------------------------------------------------------------------------------------
# The four numbers, watched as stated
# ---------------------------------------------------------------------------------------------


def test_dead_letters_count_the_webhooks_given_up_not_the_dlq_the_reconciler_drains(template: Any) -> None:
    # Given the KPI: fewer than 10 dead letters
    props = alarm(template, "DeadLetters")
    read = {(m["name"], m["dimensions"]["service"], m["stat"]) for m in inputs(props)}
    # Then it adds up the webhooks dead-lettered by the processor (given up, invalid) and the reconciler
    assert read == {
        (webhook_metrics.DEAD_LETTERED, "webhook_processor", "Sum"),
        (webhook_metrics.DEAD_LETTERED, "dlq_reconciler", "Sum"),
    }
    assert (props["Threshold"], props["ComparisonOperator"]) == (10, "GreaterThanOrEqualToThreshold")
    assert {m["period"] for m in inputs(props)} == {3600}
    assert props["TreatMissingData"] == "notBreaching"
    # And the SQS dead-letter queue is watched for what it means: the reconciler is not draining it
    stuck = alarm(template, "ReconcilerStuck")
    [metric] = inputs(stuck)
    assert (metric["namespace"], metric["name"], metric["stat"]) == (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        "Maximum",
    )
    [dlq_id] = [
        k for k, q in resources(template, "AWS::SQS::Queue").items() if "RedrivePolicy" not in q["Properties"]
    ]
    assert metric["dimensions"] == {"QueueName": {"Fn::GetAtt": [dlq_id, "QueueName"]}}


def test_booking_time_is_the_average_where_clients_feel_it_and_in_the_handler(template: Any) -> None:
    api_id = main_api_id(template)
    # Given the KPI: average booking time under 200 ms
    client_side = alarm(template, "BookingLatency")
    [metric] = inputs(client_side)
    # Then API Gateway's latency of the booking route (gateway, cold start, handler) is averaged
    assert metric == {
        "namespace": "AWS/ApiGateway",
        "name": "Latency",
        "dimensions": {"ApiId": {"Ref": api_id}, "Stage": "$default", "Route": "POST /appointments"},
        "stat": "Average",
        "period": 300,
    }
    # which needs the stage's detailed (per-route) metrics, on for that route
    stage = main_stage(template)
    assert stage["Properties"]["RouteSettings"]["POST /appointments"]["DetailedMetricsEnabled"] is True
    # And the handler's own measure too, so the paged person sees which side is slow
    handler = alarm(template, "BookingHandlerLatency")
    [metric] = inputs(handler)
    assert (metric["name"], metric["stat"], metric["dimensions"]) == (
        booking_metrics.LATENCY,
        "Average",
        {"service": "booking"},
    )
    for props in (client_side, handler):
        assert (props["Threshold"], props["ComparisonOperator"]) == (200, "GreaterThanThreshold")
        # And one slow request at night pages nobody: 15 minutes of it do
        assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (3, 3)


def test_success_rate_is_m_of_n_and_ignores_a_handful_of_deliveries(template: Any) -> None:
    props = alarm(template, "SuccessRate")
    assert (props["Threshold"], props["ComparisonOperator"]) == (99, "LessThanThreshold")
    assert props["DatapointsToAlarm"] < props["EvaluationPeriods"]
    # Below a minimum number of deliveries the rate is not judged (one failure in three is not 66 %)
    from infra.constructs.observability import MIN_SAMPLES

    assert f">= {MIN_SAMPLES}" in expression(props)
    assert MIN_SAMPLES >= 20


def test_lock_contention_counts_lock_timeouts_and_database_unavailability_has_its_own_alarm(
    template: Any,
) -> None:
    busy = alarm(template, "BusyRate")
    assert {m["name"] for m in inputs(busy)} == {booking_metrics.ATTEMPTED, booking_metrics.BUSY}
    assert (busy["Threshold"], busy["ComparisonOperator"]) == (1, "GreaterThanThreshold")
    assert "a >=" in expression(busy)  # low sample counts are not judged
    down = alarm(template, "DatabaseUnavailable")
    [metric] = inputs(down)
    assert (metric["name"], metric["stat"], metric["dimensions"]) == (
        booking_metrics.DATABASE_UNAVAILABLE,
        "Sum",
        {"service": "booking"},
    )


def test_booking_metrics_tell_a_lock_timeout_from_a_database_outage(emitted: dict[Any, str]) -> None:
    # Given one busy booking (lock held) and one with the database unreachable, in separate containers
    names = {n for _, n, _ in emitted}
    # Then each is counted under its own name (the busy count is lock contention only: the
    # test above ran exactly one lock timeout)
    assert {booking_metrics.BUSY, booking_metrics.DATABASE_UNAVAILABLE} <= names


# ---------------------------------------------------------------------------------------------
# Every alarm: tuned on purpose, heard on the way in and out, and the missing ones
# ---------------------------------------------------------------------------------------------


def test_every_alarm_has_its_datapoints_its_missing_data_and_ok_actions(templates: dict[str, Any]) -> None:
    for stage, template in templates.items():
        [topic] = resources(template, "AWS::SNS::Topic")
        for logical_id, props in alarms(template).items():
            assert 1 <= props["DatapointsToAlarm"] <= props["EvaluationPeriods"], logical_id
            assert props["TreatMissingData"] in ("notBreaching", "breaching", "ignore", "missing"), logical_id
            # Then the person paged is told when it fires and when it clears
            assert props["AlarmActions"] == [{"Ref": topic}], (stage, logical_id)
            assert props["OKActions"] == [{"Ref": topic}], (stage, logical_id)


def test_the_conditions_nobody_was_paged_for_have_alarms(templates: dict[str, Any]) -> None:
    for stage, template in templates.items():
        [queue_id] = [
            k for k, q in resources(template, "AWS::SQS::Queue").items() if "RedrivePolicy" in q["Properties"]
        ]
        [db_id, db] = next(iter(resources(template, "AWS::RDS::DBInstance").items()))
        [proxy] = resources(template, "AWS::RDS::DBProxy").values()
        # The queue's oldest message (a database outage: the processor backs off, the rate has no data)
        [age] = inputs(alarm(template, "QueueOldestMessage"))
        assert (age["name"], age["dimensions"]) == (
            "ApproximateAgeOfOldestMessage",
            {"QueueName": {"Fn::GetAtt": [queue_id, "QueueName"]}},
        )
        # Lambda throttles, per function
        functions = {
            k
            for k, f in resources(template, "AWS::Lambda::Function").items()
            if str(f["Properties"].get("FunctionName", "")).startswith(f"slotguard-{stage}-")
        }
        throttled = {
            m["dimensions"]["FunctionName"]["Ref"]
            for props in alarms(template).values()
            for m in inputs(props)
            if m["name"] == "Throttles"
        }
        assert throttled == functions
        # The database: CPU, free storage, freeable memory, and CPU credits where the class bursts
        rds = {
            m["name"]: m
            for props in alarms(template).values()
            for m in inputs(props)
            if m["namespace"] == "AWS/RDS" and "DBInstanceIdentifier" in m["dimensions"]
        }
        expected = {"CPUUtilization", "FreeStorageSpace", "FreeableMemory"}
        if db["Properties"]["DBInstanceClass"].startswith("db.t"):
            expected.add("CPUCreditBalance")
        assert set(rds) == expected, stage
        assert all(m["dimensions"] == {"DBInstanceIdentifier": {"Ref": db_id}} for m in rds.values())
        # The proxy's connection errors (clients refused at login, the proxy failing to reach the database)
        proxy_errors = {m["name"]: m["dimensions"] for m in inputs(alarm(template, "ProxyConnectionErrors"))}
        assert proxy_errors == {
            "ClientConnectionsSetupFailedAuth": {"ProxyName": proxy["Properties"]["DBProxyName"]},
            "DatabaseConnectionsSetupFailed": {"ProxyName": proxy["Properties"]["DBProxyName"]},
        }
        # A message the reconciler cannot parse
        [unparsable] = inputs(alarm(template, "ReconcilerUnparsable"))
        assert (unparsable["name"], unparsable["dimensions"]) == (
            webhook_metrics.UNPARSABLE,
            {"service": "dlq_reconciler"},
        )
        # And a spike of 401s
        assert alarm(template, "Unauthorized")["Threshold"] >= 50


def test_rds_thresholds_follow_the_stages_instance(templates: dict[str, Any]) -> None:
    for template in templates.values():
        [db] = resources(template, "AWS::RDS::DBInstance").values()
        storage = alarm(template, "DatabaseFreeStorage")
        # Then free storage is judged against the stage's allocated storage (20 %)
        allocated = int(db["Properties"]["AllocatedStorage"]) * 1024**3
        assert storage["Threshold"] == allocated // 5
        assert storage["ComparisonOperator"] == "LessThanThreshold"


def test_the_dashboard_shows_the_four_numbers_first_with_their_thresholds(template: Any) -> None:
    [dashboard] = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    text = "".join(p if isinstance(p, str) else "\u0000" for p in body["Fn::Join"][1])
    widgets = json.loads(text.replace("\u0000", "x"))["widgets"]
    first = widgets[:4]
    titles = [w["properties"]["title"] for w in first]
    assert titles == [
        "Webhook success rate (%)",
        "Dead letters (webhooks given up, per hour)",
        "Booking time, average (ms)",
        "Bookings refused for lock contention (%)",
    ]
    thresholds = [
        [a["value"] for a in w["properties"].get("annotations", {}).get("horizontal", [])] for w in first
    ]
    assert thresholds == [[99], [10], [200], [1]]
    assert all(w["y"] == 0 for w in first)


def test_a_deployable_prod_stage_needs_a_subscriber_for_its_alarms() -> None:
    from infra.app import build_app

    # Given prod without alarm_emails nor alarm_https_endpoint
    context = {k: v for k, v in CONTEXT.items() if not k.startswith("alarm_")}
    # Then the app refuses to synthesize it, naming the context keys
    with pytest.raises(ValueError, match="alarm_emails") as refused:
        build_app({**context, "stage": "prod"})
    assert "alarm_https_endpoint" in str(refused.value)
    # And dev, or prod with synth_only (make synth, CI), still synthesize
    build_app({**context, "stage": "dev"})
    build_app({**context, "stage": "prod", "synth_only": "true"})


# name: (threshold, comparison, datapoints of periods, period s, missing data) as docs/operations.md
# gives them. Thresholds in bytes follow the stage (test_rds_thresholds_follow_the_stages_instance).
SPEC = {
    "SuccessRate": (99, "LessThanThreshold", (2, 3), 300, "notBreaching"),
    "DeadLetters": (10, "GreaterThanOrEqualToThreshold", (1, 1), 3600, "notBreaching"),
    "BookingLatency": (200, "GreaterThanThreshold", (3, 3), 300, "notBreaching"),
    "BookingHandlerLatency": (200, "GreaterThanThreshold", (3, 3), 300, "notBreaching"),
    "BusyRate": (1, "GreaterThanThreshold", (2, 3), 300, "notBreaching"),
    "DatabaseUnavailable": (1, "GreaterThanOrEqualToThreshold", (2, 3), 60, "notBreaching"),
    "QueueOldestMessage": (900, "GreaterThanOrEqualToThreshold", (3, 3), 60, "notBreaching"),
    "ReconcilerStuck": (900, "GreaterThanOrEqualToThreshold", (3, 3), 60, "notBreaching"),
    "ReconcilerUnparsable": (1, "GreaterThanOrEqualToThreshold", (1, 1), 300, "notBreaching"),
    "PinnedConnections": (0, "GreaterThanThreshold", (1, 1), 60, "notBreaching"),
    "ProxyConnectionErrors": (5, "GreaterThanOrEqualToThreshold", (1, 1), 300, "notBreaching"),
    "DatabaseCpu": (80, "GreaterThanThreshold", (3, 3), 300, "notBreaching"),
    "DatabaseFreeStorage": (None, "LessThanThreshold", (1, 1), 300, "ignore"),
    "DatabaseFreeableMemory": (None, "LessThanThreshold", (3, 3), 300, "notBreaching"),
    "Unauthorized": (50, "GreaterThanOrEqualToThreshold", (2, 2), 300, "notBreaching"),
    "Api5xx": (5, "GreaterThanOrEqualToThreshold", (1, 1), 300, "notBreaching"),
}


def test_each_alarm_decides_as_operations_md_says(templates: dict[str, Any]) -> None:
    for stage, template in templates.items():
        for name, (threshold, comparison, (datapoints, periods), period, missing) in SPEC.items():
            props = alarm(template, name)
            # Then its threshold, comparison, M of N, period and missing data are the documented ones
            if threshold is not None:
                assert props["Threshold"] == threshold, (stage, name)
            assert props["ComparisonOperator"] == comparison, (stage, name)
            assert (props["DatapointsToAlarm"], props["EvaluationPeriods"]) == (datapoints, periods), (
                stage,
                name,
            )
            assert {m["period"] for m in inputs(props)} == {period}, (stage, name)
            assert props["TreatMissingData"] == missing, (stage, name)
        # And per function: errors and throttles, at the first one in five minutes
        per_function = [
            k for k in alarms(template) if k.startswith(("ObservabilityErrors", "ObservabilityThrottles"))
        ]
        assert len(per_function) == 2 * 8  # the eight functions, the console and migrations included
        for logical_id in per_function:
            props = alarms(template)[logical_id]
            assert (props["Threshold"], props["DatapointsToAlarm"], props["Period"]) == (1, 1, 300), (
                logical_id
            )
    operations = (ROOT / "docs" / "operations.md").read_text()
    for name in SPEC:
        assert f"`{name}`" in operations, name
