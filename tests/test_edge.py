"""Per-tenant fairness on the public webhook route (issue 18): in AWS, CloudFront and AWS WAF in
front of it, a rate limit per org path and one per sender. The templates are asserted (neither WAF
nor CloudFront runs on this machine); the receiver's refusal of what did not come through the edge
is run in tests/test_edge_receiver.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.test_infra import CONTEXT, ROOT, main_api_id, resources, webhook_origin_stage

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
        assert (rate["AggregateKeyType"], rate["Limit"], rate["EvaluationWindowSec"]) == (
            "IP",
            limits.per_sender,
            60,
        )
        assert per_sender["Action"] == per_org["Action"]  # the same 429 with Retry-After
        # And nothing but the webhook route is served through the edge (404 first)
        only = _rule(acl, "OnlyTheWebhookRoute")
        _webhook_path_scope(only["Statement"]["NotStatement"]["Statement"])
        assert only["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 404
        assert only["Priority"] < per_org["Priority"] < per_sender["Priority"]
        # And its ARN is published in us-east-1 for the stage's stack to read
        [parameter] = resources(template, "AWS::SSM::Parameter").values()
        assert parameter["Properties"]["Name"] == f"/slotguard/{stage}/webhook-edge/web-acl-arn"
        [acl_id] = resources(template, "AWS::WAFv2::WebACL")
        assert parameter["Properties"]["Value"] == {"Fn::GetAtt": [acl_id, "Arn"]}


def test_the_edge_stacks_are_in_us_east_1_and_deploy_before_the_stage(cdk_app: Any) -> None:
    for stage in STAGES:
        edge = cdk_app.node.find_child(f"Slotguard-{stage}-edge")
        main = cdk_app.node.find_child(f"Slotguard-{stage}")
        assert edge.region == "us-east-1"
        assert main.region == CONTEXT["region"]
        assert edge in main.dependencies


def _capacity_table() -> dict[str, dict[str, int]]:
    """docs/capacity.md's table of the edge's limits: {row: {stage: requests per 60 s}}."""
    text = (ROOT / "docs" / "capacity.md").read_text()
    rows: dict[str, dict[str, int]] = {}
    for key, marker in (("per_org_path", "`PerOrgPath`"), ("per_sender", "`PerSender`")):
        [line] = [line for line in text.splitlines() if line.startswith("|") and marker in line]
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[key] = {
            stage: int(cells[i].split()[0].replace(",", "")) for i, stage in ((1, "dev"), (2, "prod"))
        }
    return rows


def test_the_edge_limits_are_the_documented_ones_and_one_sender_within_its_limit_cannot_starve_the_rest(
    edge_templates: dict[str, Any],
) -> None:
    from slotguard.topology import CAPACITY, PROMISED_LOAD, WEBHOOK_THROTTLE

    documented = _capacity_table()
    for stage in STAGES:
        [acl] = resources(edge_templates[stage], "AWS::WAFv2::WebACL").values()
        per_org = _rule(acl, "PerOrgPath")["Statement"]["RateBasedStatement"]["Limit"]
        per_sender = _rule(acl, "PerSender")["Statement"]["RateBasedStatement"]["Limit"]
        load = PROMISED_LOAD[stage]
        # Then the web ACL holds the limits docs/capacity.md gives operators
        assert (per_org, per_sender) == (documented["per_org_path"][stage], documented["per_sender"][stage])
        # And one org's senders may send twice its promised share, one sender twice the whole promise
        # (a provider sending for every org), per second over WAF's 60 s window
        assert per_org / 60 >= CAPACITY.headroom * load.webhooks_per_s_per_org
        assert per_sender / 60 >= CAPACITY.headroom * load.webhooks_per_s
        # And the origin's throttle holds one sender at its limit beside twice the promised traffic:
        # a sender within its limit cannot push the other orgs' webhooks into 429s
        assert per_sender / 60 + CAPACITY.headroom * load.webhooks_per_s <= WEBHOOK_THROTTLE["rate_limit"]
        # And WAF's own bounds hold (at least 10 per window)
        assert 10 <= per_org < per_sender


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
        text = json.dumps(reader["Properties"]["Create"])
        assert "getParameter" in text and "us-east-1" in text, text
        assert f"/slotguard/{stage}/webhook-edge/web-acl-arn" in text
        assert config["WebACLId"]["Fn::GetAtt"][1] == "Parameter.Value"
        # (and it may read that parameter in us-east-1, nothing else)
        reader_statements = [
            st
            for key, policy in resources(template, "AWS::IAM::Policy").items()
            if key.startswith("WebhookEdgeWebAclReader")
            for st in policy["Properties"]["PolicyDocument"]["Statement"]
        ]
        assert [st["Action"] for st in reader_statements] == ["ssm:GetParameter"], reader_statements
        assert ":ssm:us-east-1:" in json.dumps(reader_statements[0]["Resource"])
        # And its one origin is the webhook origin API (not the main API), over TLS 1.2, sent the
        # edge's secret header (from Secrets Manager, resolved by CloudFormation)
        [origin] = config["Origins"]
        origin_api = origin["DomainName"]["Fn::Join"][1][0]["Ref"]
        assert origin["DomainName"]["Fn::Join"][1][1] == f".execute-api.{CONTEXT['region']}."
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
        # (every viewer header but Host: API Gateway answers only its own host name)
        assert behavior["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"
        # And IPv4 only: WAF counts each IPv6 address on its own (a host may hold a /64)
        assert config["IPV6Enabled"] is False
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
        granting = [st for st in statements if st["Resource"] == {"Ref": secret_id}]
        assert len(granting) == 1 and "secretsmanager:GetSecretValue" in granting[0]["Action"], statements
        # (the only other secrets it may read are the orgs' signing secrets, by their prefix)
        others = [
            st["Resource"]
            for st in statements
            if "secretsmanager:GetSecretValue" in st["Action"] and st not in granting
        ]
        assert len(others) == 1 and f"slotguard/{stage}/webhooks/*" in json.dumps(others[0]), others
        # And the webhook URL the stack gives senders is the distribution's
        output = template.to_json()["Outputs"]["WebhookUrl"]["Value"]
        [distribution_id] = resources(template, "AWS::CloudFront::Distribution")
        assert output["Fn::Join"][1] == [
            "https://",
            {"Fn::GetAtt": [distribution_id, "DomainName"]},
            "/webhooks/",
        ]


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


def test_naming_the_edge_secrets_new_version_changes_the_reference_so_cloudformation_reads_it_again(
    templates: dict[str, Any],
) -> None:
    from aws_cdk.assertions import Template

    from infra.app import build_app

    def header(distribution: dict[str, Any]) -> Any:
        [origin] = distribution["Properties"]["DistributionConfig"]["Origins"]
        [value] = origin["OriginCustomHeaders"]
        return value["HeaderValue"]["Fn::Join"][1]

    # Given the dev stage as synthesized: the header is the secret's current version
    [before] = resources(templates["dev"], "AWS::CloudFront::Distribution").values()
    secret_ref = header(before)[1]
    assert header(before) == ["{{resolve:secretsmanager:", secret_ref, ":SecretString:::}}"]
    # When it is synthesized naming the version put-secret-value answered (docs/operations.md)
    version = "a1b2c3d4-0000-1111-2222-333344445555"
    app = build_app({**CONTEXT, "edge_secret_version": version})
    [after] = resources(
        Template.from_stack(app.node.find_child("Slotguard-dev")), "AWS::CloudFront::Distribution"
    ).values()
    # Then the reference itself names that version (CloudFormation resolves a dynamic reference again
    # only when the reference changes), and nothing else of the distribution differs
    assert header(after) == ["{{resolve:secretsmanager:", secret_ref, f":SecretString:::{version}}}}}"]
    b, a = before["Properties"]["DistributionConfig"], after["Properties"]["DistributionConfig"]
    assert {k: v for k, v in a.items() if k != "Origins"} == {k: v for k, v in b.items() if k != "Origins"}
    # And a value that is not a VersionId is refused
    with pytest.raises(ValueError, match="edge_secret_version"):
        build_app({**CONTEXT, "edge_secret_version": "2"})
