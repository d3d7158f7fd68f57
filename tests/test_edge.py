"""Per-tenant fairness on the public webhook route (issue 18): in AWS, CloudFront and AWS WAF in
front of it, a rate limit per org path and one per sender, and a receiver that refuses what did
not come through the edge. The templates are asserted (neither WAF nor CloudFront runs on this
machine); the receiver's refusal is run, with a real payload-2.0 event and moto's Secrets Manager."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from tests.conftest import signed_headers
from tests.test_infra import CONTEXT, main_api_id, resources, webhook_origin_stage
from tests.test_webhook_receiver import BODY, REJECTED, CallCounter, queued
from tests.webhook_support import Pipeline

STAGES = ("dev", "prod")


def _rule(acl: dict[str, Any], name: str) -> dict[str, Any]:
    [rule] = [r for r in acl["Properties"]["Rules"] if r["Name"] == name]
    return rule


def _webhook_path_scope(statement: dict[str, Any]) -> None:
    match = statement["ByteMatchStatement"]
    assert match["FieldToMatch"] == {"UriPath": {}}
    assert (match["PositionalConstraint"], match["SearchString"]) == ("STARTS_WITH", "/webhooks/")


def test_each_org_path_and_each_sender_have_their_own_budget_at_the_edge(
    edge_templates: dict[str, Any],
) -> None:
    from infra.constructs.edge import RATE_LIMITED_RETRY_AFTER_S
    from slotguard.topology import EDGE_LIMITS

    for stage in STAGES:
        template = edge_templates[stage]
        # Given the stage's web ACL (CloudFront's: made in us-east-1)
        [acl] = resources(template, "AWS::WAFv2::WebACL").values()
        assert acl["Properties"]["Scope"] == "CLOUDFRONT"
        assert acl["Properties"]["DefaultAction"] == {"Allow": {}}
        limits = EDGE_LIMITS[stage]
        # Then requests to one /webhooks/<org_id> path are counted on their own (the path is the
        # key), over WAF's shortest window, and answered 429 with Retry-After past the limit
        per_org = _rule(acl, "PerOrgPath")
        rate = per_org["Statement"]["RateBasedStatement"]
        assert rate["AggregateKeyType"] == "CUSTOM_KEYS"
        assert rate["CustomKeys"] == [
            {"UriPath": {"TextTransformations": [{"Priority": 0, "Type": "LOWERCASE"}]}}
        ]
        assert (rate["Limit"], rate["EvaluationWindowSec"]) == (limits.per_org_path, 60)
        _webhook_path_scope(rate["ScopeDownStatement"])
        block = per_org["Action"]["Block"]["CustomResponse"]
        assert block["ResponseCode"] == 429
        assert block["ResponseHeaders"] == [{"Name": "retry-after", "Value": str(RATE_LIMITED_RETRY_AFTER_S)}]
        # And each sender (IP address) on its own, whatever paths it sprays
        per_sender = _rule(acl, "PerSender")
        rate = per_sender["Statement"]["RateBasedStatement"]
        assert (rate["AggregateKeyType"], rate["Limit"]) == ("IP", limits.per_sender)
        assert per_sender["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429
        # And nothing but the webhook route is served through the edge (404 first)
        only = _rule(acl, "OnlyTheWebhookRoute")
        _webhook_path_scope(only["Statement"]["NotStatement"]["Statement"])
        assert only["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 404
        assert only["Priority"] < per_org["Priority"] < per_sender["Priority"]
        # And its ARN is published in us-east-1 for the stage's stack to read
        [parameter] = resources(template, "AWS::SSM::Parameter").values()
        assert parameter["Properties"]["Name"] == f"/slotguard/{stage}/webhook-edge/web-acl-arn"
        assert parameter["Properties"]["Value"] == {
            "Fn::GetAtt": [next(iter(resources(template, "AWS::WAFv2::WebACL"))), "Arn"]
        }


def test_the_edge_stacks_are_in_us_east_1_and_deploy_before_the_stage(cdk_app: Any) -> None:
    for stage in STAGES:
        edge = cdk_app.node.find_child(f"Slotguard-{stage}-edge")
        main = cdk_app.node.find_child(f"Slotguard-{stage}")
        assert edge.region == "us-east-1"
        assert main.region == CONTEXT["region"]
        assert edge in main.dependencies


def test_the_edge_limits_are_sized_from_the_promised_load_and_one_sender_cannot_use_up_the_route() -> None:
    from slotguard.topology import CAPACITY, EDGE_LIMITS, PROMISED_LOAD, WEBHOOK_THROTTLE

    for stage in STAGES:
        limits, load = EDGE_LIMITS[stage], PROMISED_LOAD[stage]
        per_s = 1 / limits.window_s
        # Then one org's senders may send twice its promised share
        assert limits.per_org_path * per_s >= CAPACITY.headroom * load.webhooks_per_s_per_org
        # And one sender twice the whole promise (a provider sending for every org) ...
        assert limits.per_sender * per_s >= CAPACITY.headroom * load.webhooks_per_s
        # ... yet less than the route's throttle behind the edge: it cannot starve the other senders
        assert limits.per_sender * per_s < WEBHOOK_THROTTLE["rate_limit"]
        # And WAF's own bounds hold (a limit of at least 10 per window)
        assert limits.per_org_path >= 10
        assert limits.per_org_path < limits.per_sender


def test_the_webhook_route_is_served_by_cloudfront_with_the_web_acl_in_front_of_its_own_origin(
    templates: dict[str, Any],
) -> None:
    for stage in STAGES:
        template = templates[stage]
        # Given the stage's distribution
        [distribution] = resources(template, "AWS::CloudFront::Distribution").values()
        config = distribution["Properties"]["DistributionConfig"]
        # Then its web ACL is the one read back from us-east-1 at deploy time
        reader_id = config["WebACLId"]["Fn::GetAtt"][0]
        reader = resources(template, "Custom::AWS")[reader_id]
        call = json.loads(json.dumps(reader["Properties"]["Create"]))
        text = json.dumps(call)
        assert "getParameter" in text and "us-east-1" in text
        assert f"/slotguard/{stage}/webhook-edge/web-acl-arn" in text
        assert config["WebACLId"]["Fn::GetAtt"][1] == "Parameter.Value"
        # And its one origin is the webhook origin API (not the main API), over TLS 1.2, sent the
        # edge's secret header (from Secrets Manager, resolved by CloudFormation)
        [origin] = config["Origins"]
        origin_api = origin["DomainName"]["Fn::Join"][1][0]["Ref"]
        assert origin_api != main_api_id(template)
        assert resources(template, "AWS::ApiGatewayV2::Api")[origin_api]
        assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
        assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
        [header] = origin["OriginCustomHeaders"]
        assert header["HeaderName"] == "x-slotguard-edge"
        secret_id = header["HeaderValue"]["Fn::Join"][1][1]["Ref"]
        assert header["HeaderValue"]["Fn::Join"][1][0] == "{{resolve:secretsmanager:"
        # And nothing is cached; POST goes through; viewers must use HTTPS
        behavior = config["DefaultCacheBehavior"]
        assert behavior["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # CachingDisabled
        assert "POST" in behavior["AllowedMethods"]
        assert behavior["ViewerProtocolPolicy"] == "https-only"
        # And the webhook origin API holds the webhook route alone
        routes = [
            r["Properties"]
            for r in resources(template, "AWS::ApiGatewayV2::Route").values()
            if r["Properties"]["ApiId"] == {"Ref": origin_api}
        ]
        assert [r["RouteKey"] for r in routes] == ["POST /webhooks/{org_id}"]
        assert webhook_origin_stage(template)["Properties"]["ApiId"] == {"Ref": origin_api}
        # And the receiver is told which secret to check, and may read that secret alone of these
        [receiver] = [
            f
            for f in resources(template, "AWS::Lambda::Function").values()
            if f["Properties"].get("FunctionName") == f"slotguard-{stage}-webhook-receiver"
        ]
        env = receiver["Properties"]["Environment"]["Variables"]
        assert env["WEBHOOK_EDGE_SECRET_ARN"] == {"Ref": secret_id}
        role_id = receiver["Properties"]["Role"]["Fn::GetAtt"][0]
        statements = [
            st
            for policy in resources(template, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for st in policy["Properties"]["PolicyDocument"]["Statement"]
        ]
        assert any(
            st["Resource"] == {"Ref": secret_id} and "secretsmanager:GetSecretValue" in st["Action"]
            for st in statements
        )
        # And the webhook URL the stack gives senders is the distribution's
        output = template.to_json()["Outputs"]["WebhookUrl"]["Value"]
        assert output["Fn::Join"][1][1] == {
            "Fn::GetAtt": [next(iter(resources(template, "AWS::CloudFront::Distribution"))), "DomainName"]
        }
        assert output["Fn::Join"][1][2] == "/webhooks/"


def test_a_deployable_stage_needs_its_region() -> None:
    from infra.app import build_app

    # Given a deployable stage's context without a Region (and none from the CDK CLI)
    context = {k: v for k, v in CONTEXT.items() if k != "region"}
    # When it is synthesized, Then it is refused with what to set
    with pytest.raises(ValueError, match="needs its Region"):
        build_app(context)
    # And a Region that is not one is refused too
    with pytest.raises(ValueError, match="must be an AWS Region"):
        build_app({**context, "region": "eu west 1"})


# -- the receiver: only what came through the edge ------------------------------------------


@pytest.fixture
def edge_secret(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> str:
    """A receiver deployed behind the edge: its secret in Secrets Manager (moto), its ARN set."""
    from slotguard_local.functions import load_function

    value = uuid.uuid4().hex + uuid.uuid4().hex
    arn = boto3.client("secretsmanager").create_secret(
        Name=f"edge-{uuid.uuid4().hex[:8]}", SecretString=value
    )["ARN"]
    monkeypatch.setenv("WEBHOOK_EDGE_SECRET_ARN", arn)
    pipeline.receiver = load_function("webhook_receiver")
    return value


def test_a_webhook_sent_to_the_origin_itself_is_refused_and_one_through_the_edge_is_queued(
    pipeline: Pipeline, edge_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an org and a correctly signed webhook
    org_id, secret = pipeline.new_org()
    headers = signed_headers(secret, "msg_edge", BODY)
    counter = CallCounter(pipeline.receiver.receiver._secrets._sm)
    capsys.readouterr()
    # When it is sent to the origin API's own URL (no edge header), or with a wrong one
    no_header = pipeline.post(org_id, BODY, headers)
    wrong = pipeline.post(org_id, BODY, {**headers, "x-slotguard-edge": edge_secret[:-1] + "x"})
    # Then both are refused with the one 401 body every reason gets, before any org's secret is read
    assert no_header == (401, REJECTED)
    assert wrong == (401, REJECTED)
    assert counter.calls == 0
    assert queued(pipeline) == []
    # And counted as rejections for that reason
    reasons = [
        json.loads(line).get("reason")
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and "WebhookRejected" in line
    ]
    assert reasons == ["not_via_edge", "not_via_edge"]
    # When it comes through the edge (CloudFront adds the header)
    status, answer = pipeline.post(org_id, BODY, {**headers, "x-slotguard-edge": edge_secret})
    # Then it is verified and queued
    assert status == 202, answer
    assert len(queued(pipeline)) == 1


def test_junk_without_the_edge_header_costs_no_secrets_manager_read_each(
    pipeline: Pipeline, edge_secret: str
) -> None:
    sm = pipeline.receiver.receiver._edge._sm
    counter = CallCounter(sm)
    org_id, secret = pipeline.new_org()
    headers = {**signed_headers(secret, "msg_junk", BODY), "x-slotguard-edge": "guess"}
    # Given a receiver that has read the edge's secret once
    assert pipeline.post(org_id, BODY, {**headers, "x-slotguard-edge": edge_secret})[0] == 202
    reads = counter.calls
    # When 30 requests guess the header
    statuses = [pipeline.post(org_id, BODY, headers)[0] for _ in range(30)]
    # Then each is refused, and the secret was re-read at most once (a changed value, after a deploy)
    assert statuses == [401] * 30
    assert counter.calls - reads <= 2  # the edge's secret once, the org's secrets never


def test_the_edge_secret_unreadable_is_503_so_the_sender_retries(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slotguard_local.functions import load_function

    # Given a receiver whose edge secret cannot be read (deleted)
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(Name=f"edge-{uuid.uuid4().hex[:8]}", SecretString="x" * 48)["ARN"]
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    monkeypatch.setenv("WEBHOOK_EDGE_SECRET_ARN", arn)
    pipeline.receiver = load_function("webhook_receiver")
    org_id, secret = pipeline.new_org()
    # When a webhook comes through the edge
    headers = {**signed_headers(secret, "msg_503", BODY), "x-slotguard-edge": "x" * 48}
    status, answer = pipeline.post(org_id, BODY, headers)
    # Then the sender is told to retry, and nothing was queued
    assert status == 503
    assert answer["error"]["code"] == "upstream_unavailable"
    assert queued(pipeline) == []
