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
    }


def test_the_deployed_alarms_match_the_synthesized_dev_stage(
    stack: StackProcess, dev_template: dict[str, Any]
) -> None:
    # Given the deployed stage and the synthesized dev stage (same constructs: same logical IDs)
    outputs, resources = deployed_resources(stack)
    physical = {k: v for k, (kind, v) in resources.items() if kind == "AWS::CloudWatch::Alarm"}
    cloudwatch = client(stack, "cloudwatch")
    dev_alarms = of_type(dev_template, "AWS::CloudWatch::Alarm")
    # Then the stage deployed every alarm of the dev stage, and no other
    assert len(dev_alarms) == 13
    assert set(physical) == set(dev_alarms)
    # And each deployed alarm decides as the synthesized one does, notifying the deployed topic
    for logical_id, synthesized in dev_alarms.items():
        [alarm] = cloudwatch.describe_alarms(AlarmNames=[physical[logical_id]])["MetricAlarms"]
        assert _alarm_shape(alarm) == _alarm_shape(synthesized), logical_id
        assert alarm["AlarmActions"] == [outputs["AlarmTopicArn"]]


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
