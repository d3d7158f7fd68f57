"""`make local AWS=localstack CDK=1`: the CDK app's LocalStack stage (infra/localstack_stack.py) is
deployed with `cdklocal deploy` onto LocalStack's CloudFormation engine, and the local stack runs on
the deployed queues. What was deployed is checked against the synthesized dev stage: the same
constructs, so the same logical IDs, redrive policy, alarms and cleanup rule.

`make test-localstack` runs these (SLOTGUARD_AWS=localstack); elsewhere they are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from slotguard_local.cdklocal import STACK_NAME
from tests.e2e.stack_process import StackProcess, http, running_stack
from tests.e2e.test_local_stack import post_webhook, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("SLOTGUARD_AWS") != "localstack",
        reason="LocalStack-backed: `make test-localstack` runs these (SLOTGUARD_AWS=localstack)",
    ),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    home = tmp_path_factory.mktemp("localstack-cdk") / ".local"
    with running_stack(home, timeout_s=240, extra_env={"SLOTGUARD_LOCALSTACK_CDK": "1"}) as running:
        yield running


@pytest.fixture(scope="module")
def dev_template() -> dict[str, Any]:
    """The dev stage as `make synth` synthesizes it (no identity provider needed)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    from infra.app import build_app

    app = build_app({"stage": "dev", "synth_only": "true"})
    template: dict[str, Any] = app.synth().get_stack_by_name("Slotguard-dev").template
    return template


def client(stack: StackProcess, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.info["aws_endpoint_url"],
        region_name=stack.info["aws_region"],
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def deployed(stack: StackProcess) -> tuple[dict[str, str], dict[str, str]]:
    """(outputs, logical ID -> physical ID) of the deployed stage."""
    outputs, resources = deployed_resources(stack)
    return outputs, {k: physical for k, (_, physical) in resources.items()}


def deployed_resources(stack: StackProcess) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(outputs, logical ID -> (type, physical ID)) of the deployed stage."""
    cfn = client(stack, "cloudformation")
    [described] = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    resources = cfn.describe_stack_resources(StackName=STACK_NAME)["StackResources"]
    return outputs, {r["LogicalResourceId"]: (r["ResourceType"], r["PhysicalResourceId"]) for r in resources}


def of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == kind}


def test_the_stage_is_deployed_and_the_stack_runs_on_its_queues(stack: StackProcess) -> None:
    # Given the stack started with CDK=1
    cfn = client(stack, "cloudformation")
    # Then the stage reached CREATE_COMPLETE on LocalStack's CloudFormation engine
    [described] = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    outputs, _ = deployed(stack)
    # And the stack uses the deployed queues and the stage's secret prefix
    assert (
        f"queues from its outputs: {outputs['WebhookQueueUrl']}, {outputs['WebhookDeadLetterQueueUrl']}"
        in (stack.log())
    )
    assert (
        stack.info["webhook_secret_prefix"]
        == outputs["WebhookSecretPrefix"]
        == "slotguard/localstack/webhooks/"
    )
    # When a signed webhook arrives
    api, org = stack.info["api_url"], stack.info["orgs"][0]
    data = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2035-03-01T09:00:00Z", "duration_minutes": 30}
    assert post_webhook(api, org, "appointment.book", data)[0] == 202
    # Then it goes through the deployed queue and becomes an appointment
    wait_for(
        lambda: (
            http("GET", f"{api}/webhook-metrics/delivery-stats?range=1h", token=org["token"])[1]["totals"][
                "completed"
            ]
            == 1
        )
    )
    _, page = http(
        "GET",
        f"{api}/appointments?from=2035-03-01T00%3A00%3A00Z&to=2035-03-02T00%3A00%3A00Z",
        token=org["token"],
    )
    assert [a["contact_id"] for a in page["items"]] == [data["contact_id"]]
    sqs = client(stack, "sqs")
    sent = sqs.get_queue_attributes(QueueUrl=outputs["WebhookQueueUrl"], AttributeNames=["All"])["Attributes"]
    assert int(sent["ApproximateNumberOfMessages"]) == 0  # consumed from there


def test_the_deployed_redrive_policy_matches_the_synthesized_dev_stage(
    stack: StackProcess, dev_template: dict[str, Any]
) -> None:
    # Given the deployed stage and the synthesized dev stage
    outputs, _ = deployed(stack)
    sqs = client(stack, "sqs")
    [dev_queue] = [q for q in of_type(dev_template, "AWS::SQS::Queue").values() if "RedrivePolicy" in q]
    [dev_dlq] = [q for q in of_type(dev_template, "AWS::SQS::Queue").values() if "RedrivePolicy" not in q]
    # When the deployed queues are read
    queue = sqs.get_queue_attributes(QueueUrl=outputs["WebhookQueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    dlq = sqs.get_queue_attributes(QueueUrl=outputs["WebhookDeadLetterQueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    # Then the redrive policy sends to the deployed DLQ after the dev stage's receive count
    redrive = json.loads(queue["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == dev_queue["RedrivePolicy"]["maxReceiveCount"]
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    # And retention and visibility are the dev stage's
    for deployed_queue, synthesized in ((queue, dev_queue), (dlq, dev_dlq)):
        assert int(deployed_queue["MessageRetentionPeriod"]) == synthesized["MessageRetentionPeriod"]
        assert int(deployed_queue["VisibilityTimeout"]) == synthesized["VisibilityTimeout"]


def _alarm_shape(alarm: dict[str, Any]) -> dict[str, Any]:
    """What an alarm decides on, comparable between a template and DescribeAlarms."""
    metrics = alarm.get("Metrics") or []
    return {
        "description": alarm["AlarmDescription"],
        "threshold": float(alarm["Threshold"]),
        "comparison": alarm["ComparisonOperator"],
        "periods": int(alarm["EvaluationPeriods"]),
        "datapoints": int(alarm["DatapointsToAlarm"]),
        "missing": alarm["TreatMissingData"],
        "metric": alarm.get("MetricName"),
        "namespace": alarm.get("Namespace"),
        "statistic": alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
        "period": int(alarm["Period"]) if alarm.get("Period") else None,
        "expressions": sorted(m["Expression"] for m in metrics if m.get("Expression")),
        "inputs": sorted(
            (m["MetricStat"]["Metric"]["MetricName"], m["MetricStat"]["Stat"])
            for m in metrics
            if "MetricStat" in m
        ),
        "actions": len(alarm["AlarmActions"]),
        "ok_actions": len(alarm["OKActions"]),
    }


def _dimensions(alarm: dict[str, Any], resolve: Any = lambda value: value) -> list[Any]:
    """Each metric an alarm reads with its dimensions, `resolve` turning a template's references
    into the deployed values."""
    metrics = (
        [alarm]
        if alarm.get("MetricName")
        else [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]
    )
    return sorted(
        (
            m["Namespace"],
            m["MetricName"],
            sorted((d["Name"], resolve(d["Value"])) for d in m.get("Dimensions", [])),
        )
        for m in metrics
    )


def test_the_deployed_alarms_match_the_synthesized_dev_stage(
    stack: StackProcess, dev_template: dict[str, Any]
) -> None:
    # Given the deployed stage and the synthesized dev stage (same constructs: same logical IDs)
    outputs, resources = deployed_resources(stack)
    physical = {k: v for k, (kind, v) in resources.items() if kind == "AWS::CloudWatch::Alarm"}
    cloudwatch = client(stack, "cloudwatch")
    dev_alarms = of_type(dev_template, "AWS::CloudWatch::Alarm")
    # Then the stage deployed every alarm of the dev stage, and no other
    assert len(dev_alarms) == 35  # 2 per function (errors, throttles) of 8, and 19 others
    assert set(physical) == set(dev_alarms)
    # And each deployed alarm decides as the synthesized one does, notifying the deployed topic
    for logical_id, synthesized in dev_alarms.items():
        [alarm] = cloudwatch.describe_alarms(AlarmNames=[physical[logical_id]])["MetricAlarms"]
        assert _alarm_shape(alarm) == _alarm_shape(synthesized), logical_id
        assert alarm["AlarmActions"] == alarm["OKActions"] == [outputs["AlarmTopicArn"]]


def test_the_deployed_alarms_read_the_metrics_and_dimensions_the_stage_names(stack: StackProcess) -> None:
    from infra.app import build_app

    # Given the LocalStack stage as synthesized, and as deployed
    app = build_app({"stage": "localstack"})
    synthesized: dict[str, Any] = app.synth().get_stack_by_name(STACK_NAME).template
    _, resources = deployed_resources(stack)

    pseudo = {
        "AWS::Partition": "aws",
        "AWS::Region": stack.info["aws_region"],
        "AWS::AccountId": "000000000000",  # LocalStack's default account
        "AWS::URLSuffix": "amazonaws.com",
    }

    def resolve(value: Any) -> Any:
        """A template's value as CloudFormation resolved it on deploy (references, and the intrinsic
        functions that take an imported function's name out of its ARN)."""
        if isinstance(value, str):
            return value
        [(function, argument)] = value.items()
        if function == "Ref":
            return pseudo.get(argument) or resources[argument][1]
        if function == "Fn::GetAtt" and argument[1] == "QueueName":
            return resources[argument[0]][1].rstrip("/").rsplit("/", 1)[-1]
        if function == "Fn::Join":
            return argument[0].join(str(resolve(part)) for part in argument[1])
        if function == "Fn::Split":
            return resolve(argument[1]).split(argument[0])
        if function == "Fn::Select":
            return resolve(argument[1])[int(argument[0])]
        raise AssertionError(f"cannot resolve {value}")

    cloudwatch = client(stack, "cloudwatch")
    for logical_id, alarm in of_type(synthesized, "AWS::CloudWatch::Alarm").items():
        [deployed_alarm] = cloudwatch.describe_alarms(AlarmNames=[resources[logical_id][1]])["MetricAlarms"]
        # Then each deployed alarm reads the same namespace, metric and dimensions (not only the same
        # shape): a swapped dimension fails here
        assert _dimensions(deployed_alarm) == _dimensions(alarm, resolve), logical_id


def test_the_deployed_cleanup_rule_matches_the_synthesized_dev_stage(
    stack: StackProcess, dev_template: dict[str, Any]
) -> None:
    # Given the deployed stage and the synthesized dev stage
    _, physical = deployed(stack)
    [(logical_id, synthesized)] = of_type(dev_template, "AWS::Events::Rule").items()
    events = client(stack, "events")
    # When the deployed rule of the same logical ID is read
    rule = events.describe_rule(Name=physical[logical_id])
    [target] = events.list_targets_by_rule(Rule=physical[logical_id])["Targets"]
    # Then it runs on the dev stage's schedule, with its retries, at the stage's cleanup function
    assert rule["ScheduleExpression"] == synthesized["ScheduleExpression"]
    assert rule["State"] == synthesized["State"]
    assert rule["Description"] == synthesized["Description"]
    assert (
        target["RetryPolicy"]["MaximumRetryAttempts"]
        == synthesized["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"]
    )
    assert target["Arn"].endswith(":function:slotguard-localstack-cleanup")


# ---------------------------------------------------------------------------------------------
# Alarms reach a person: an alarm driven by the metric data the system emits under a fault goes to
# ALARM, and its notification arrives at a subscriber of the alarm topic (an SQS queue here).
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inbox(stack: StackProcess) -> str:
    """An SQS queue subscribed to the deployed alarm topic: what a pager would receive."""
    outputs, _ = deployed(stack)
    sqs, sns = client(stack, "sqs"), client(stack, "sns")
    url: str = sqs.create_queue(QueueName=f"alarm-inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=outputs["AlarmTopicArn"], Protocol="sqs", Endpoint=arn)
    return url


def notifications(stack: StackProcess, inbox: str) -> list[dict[str, Any]]:
    """The alarm notifications (CloudWatch's JSON, inside SNS's envelope) that reached the inbox."""
    sqs = client(stack, "sqs")
    found = []
    for message in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    ):
        sqs.delete_message(QueueUrl=inbox, ReceiptHandle=message["ReceiptHandle"])
        found.append(json.loads(json.loads(message["Body"])["Message"]))
    return found


class EmfForwarder:
    """What CloudWatch Logs does with a function's EMF lines in AWS (extract them as metric data),
    for the local stack's functions, which write them to <home>/metrics.jsonl: each record's values
    are put to LocalStack's CloudWatch under its namespace, dimensions and timestamp."""

    def __init__(self, stack: StackProcess) -> None:
        self._path = stack.home / "metrics.jsonl"
        self._offset = self._path.stat().st_size if self._path.exists() else 0
        self._cloudwatch = client(stack, "cloudwatch")
        self.sent: dict[tuple[str, str], float] = {}  # (service, metric) -> total forwarded

    def forward(self) -> None:
        from datetime import UTC, datetime

        if not self._path.exists():
            return
        with open(self._path, "rb") as records:
            records.seek(self._offset)
            lines = records.read().splitlines(keepends=True)
        complete = [line for line in lines if line.endswith(b"\n")]
        self._offset += sum(len(line) for line in complete)
        for line in complete:
            record = json.loads(line)
            when = datetime.fromtimestamp(record["_aws"]["Timestamp"] / 1000, UTC)
            for directive in record["_aws"]["CloudWatchMetrics"]:
                for dimension_set in directive["Dimensions"]:
                    dimensions = [{"Name": d, "Value": str(record[d])} for d in dimension_set]
                    data = []
                    for metric in directive["Metrics"]:
                        values = record[metric["Name"]]
                        values = values if isinstance(values, list) else [values]
                        data.append(
                            {
                                "MetricName": metric["Name"],
                                "Dimensions": dimensions,
                                "Timestamp": when,
                                "Values": values,
                                "Unit": metric["Unit"],
                            }
                        )
                        key = (str(record.get("service")), metric["Name"])
                        self.sent[key] = self.sent.get(key, 0) + sum(values)
                    self._cloudwatch.put_metric_data(Namespace=directive["Namespace"], MetricData=data)


def alarm_named(stack: StackProcess, construct: str) -> dict[str, Any]:
    _, resources = deployed_resources(stack)
    [name] = [
        physical
        for logical_id, (kind, physical) in resources.items()
        if kind == "AWS::CloudWatch::Alarm"
        and logical_id.startswith(f"Observability{construct}")
        and len(logical_id) == len(f"Observability{construct}") + 8
    ]
    [alarm] = client(stack, "cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return alarm


def local_admin_url(stack: StackProcess) -> str:
    import re

    [port] = re.findall(r"embedded PostgreSQL on 127\.0\.0\.1:(\d+)", stack.log())[-1:]
    return f"postgresql://postgres@127.0.0.1:{port}/slotguard"


@pytest.mark.timeout(600)
def test_a_database_outage_pages_through_the_topic_evaluated_by_localstack(
    stack: StackProcess, inbox: str
) -> None:
    import time

    import psycopg

    # Given the DatabaseUnavailable alarm as deployed (a plain Sum: LocalStack evaluates it, every
    # EvaluationPeriods x Period = 3 minutes) and the metric data the functions emit
    alarm = alarm_named(stack, "DatabaseUnavailable")
    assert (alarm["MetricName"], alarm["Statistic"]) == ("BookingDatabaseUnavailable", "Sum")
    forwarder = EmfForwarder(stack)
    api, org = stack.info["api_url"], stack.info["orgs"][0]
    # When the database refuses the application's logins (a failover, a broken credential)
    with psycopg.connect(local_admin_url(stack), autocommit=True) as admin:
        admin.execute("ALTER ROLE slotguard_app NOLOGIN")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'slotguard_app'"
        )
        try:
            received: list[dict[str, Any]] = []
            deadline = time.monotonic() + 480
            while time.monotonic() < deadline and not received:
                # and clients keep booking: each is answered 503 database_unavailable
                body = {
                    "contact_id": str(uuid.uuid4()),
                    "scheduled_at": "2035-05-01T09:00:00Z",
                    "duration_minutes": 30,
                }
                status, answer = http("POST", f"{api}/appointments", token=org["token"], body=body)
                assert (status, answer["error"]["code"]) == (503, "database_unavailable"), answer
                forwarder.forward()
                received = [
                    n
                    for n in notifications(stack, inbox)
                    if n["AlarmName"] == alarm["AlarmName"] and n["NewStateValue"] == "ALARM"
                ]
                time.sleep(5)
        finally:
            admin.execute("ALTER ROLE slotguard_app LOGIN")
    # Then the booking function's own EMF counted the outage under the alarm's metric
    assert forwarder.sent[("booking", "BookingDatabaseUnavailable")] >= 1
    assert ("booking", "BookingBusy") not in forwarder.sent  # not lock contention
    # And LocalStack's evaluation put the alarm in ALARM, whose notification reached the subscriber
    assert received, f"no ALARM notification in time; forwarded {forwarder.sent}"
    assert received[0]["Trigger"]["MetricName"] == "BookingDatabaseUnavailable"
    assert alarm_named(stack, "DatabaseUnavailable")["StateValue"] == "ALARM"


@pytest.mark.timeout(300)
def test_dead_letters_from_invalid_webhooks_reach_the_alarms_metric_and_its_actions_reach_the_subscriber(
    stack: StackProcess, inbox: str
) -> None:
    from datetime import UTC, datetime, timedelta

    # Given the DeadLetters alarm (metric math: LocalStack's open-source runtime evaluates only plain
    # metric alarms, so its action path is shown with SetAlarmState below)
    alarm = alarm_named(stack, "DeadLetters")
    assert alarm["Threshold"] == 10 and "FILL(dp, 0) + FILL(dr, 0)" in json.dumps(alarm["Metrics"])
    forwarder = EmfForwarder(stack)
    api, org = stack.info["api_url"], stack.info["orgs"][0]
    # When ten webhooks arrive that the processor finds invalid
    for _ in range(10):
        assert post_webhook(api, org, "appointment.book", {"contact_id": "not a uuid"})[0] == 202

    def dead_lettered() -> float:
        forwarder.forward()
        return forwarder.sent.get(("webhook_processor", "WebhookDeadLettered"), 0)

    # Then the processor's EMF counts ten dead letters under the alarm's input metric
    wait_for(lambda: dead_lettered() >= 10, timeout_s=60)
    [processor_input] = [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if m["Id"] == "dp"]
    now = datetime.now(UTC)
    stats = client(stack, "cloudwatch").get_metric_statistics(
        Namespace=processor_input["Namespace"],
        MetricName=processor_input["MetricName"],
        Dimensions=processor_input["Dimensions"],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(minutes=1),
        Period=3600,
        Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in stats["Datapoints"]) >= alarm["Threshold"]
    # And when the alarm goes to ALARM, and back to OK, the subscriber hears both
    cloudwatch = client(stack, "cloudwatch")
    cloudwatch.set_alarm_state(
        AlarmName=alarm["AlarmName"], StateValue="ALARM", StateReason="10 invalid webhooks dead-lettered"
    )
    cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue="OK", StateReason="redriven")
    heard: list[str] = []

    def both() -> bool:
        heard.extend(
            n["NewStateValue"] for n in notifications(stack, inbox) if n["AlarmName"] == alarm["AlarmName"]
        )
        return {"ALARM", "OK"} <= set(heard)

    wait_for(both, timeout_s=30)
