"""The synthesized CloudFormation of the CDK app (aws_cdk.assertions), offline. cdk-nag runs as
a CDK validation plugin: an unacknowledged AwsSolutions finding fails the synth itself."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from slotguard.topology import ROUTES, WEBHOOK_QUEUE

ROOT = Path(__file__).resolve().parents[1]
ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
CONTEXT = {
    "stage": "dev",
    "jwt_issuer": ISSUER,
    "jwt_audience": "slotguard-api",
    "alarm_emails": "oncall@slotguard.dev,lead@slotguard.dev",
    "alarm_https_endpoint": "https://events.pagerduty.com/integration/abc123/enqueue",
    "region": "eu-west-1",
}


def resources(template: Any, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = template.find_resources(kind)
    return found


def main_api_id(template: Any) -> str:
    """The main HTTP API's logical id (the webhook route's origin API is the edge's: test_edge.py)."""
    [api_id] = [k for k in resources(template, "AWS::ApiGatewayV2::Api") if not k.startswith("WebhookEdge")]
    return api_id


def main_stage(template: Any) -> Any:
    api_id = main_api_id(template)
    [stage] = [
        v
        for v in resources(template, "AWS::ApiGatewayV2::Stage").values()
        if v["Properties"]["ApiId"] == {"Ref": api_id}
    ]
    return stage


def our_functions(template: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in resources(template, "AWS::Lambda::Function").items()
        if str(v["Properties"].get("FunctionName", "")).startswith("slotguard-dev-")
    }


def main_queue(template: Any) -> dict[str, Any]:
    [queue] = [
        q for q in resources(template, "AWS::SQS::Queue").values() if "RedrivePolicy" in q["Properties"]
    ]
    return queue


def dead_letter_queue(template: Any) -> dict[str, Any]:
    [queue] = [
        q for q in resources(template, "AWS::SQS::Queue").values() if "RedrivePolicy" not in q["Properties"]
    ]
    return queue


def test_redrive_policy_is_a_backstop_above_the_processors_max_attempts(template: Any) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    main = main_queue(template)
    # The redrive is a backstop well above the application's budget (WEBHOOK_MAX_ATTEMPTS)
    assert main["Properties"]["RedrivePolicy"]["maxReceiveCount"] >= 10 * WEBHOOK_QUEUE.max_attempts
    processor = next(
        f
        for f in our_functions(template).values()
        if f["Properties"]["FunctionName"] == "slotguard-dev-webhook-processor"
    )
    assert processor["Properties"]["Environment"]["Variables"]["WEBHOOK_MAX_ATTEMPTS"] == str(
        WEBHOOK_QUEUE.max_attempts
    )
    # Visibility timeout at least six times the processor's timeout
    assert main["Properties"]["VisibilityTimeout"] >= 6 * processor["Properties"]["Timeout"]
    for queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True


def test_queues_refuse_plain_http(template: Any) -> None:
    policies = resources(template, "AWS::SQS::QueuePolicy")
    assert len(policies) == 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


def test_event_source_mappings(template: Any) -> None:
    mappings = list(resources(template, "AWS::Lambda::EventSourceMapping").values())
    assert len(mappings) == 2  # processor on the queue, reconciler on the DLQ
    for mapping in mappings:
        assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    processor = next(
        m
        for m in mappings
        if m["Properties"]["BatchSize"] == WEBHOOK_QUEUE.batch_size
        and m["Properties"].get("MaximumBatchingWindowInSeconds") == WEBHOOK_QUEUE.batching_window_s
    )
    assert processor["Properties"]["ScalingConfig"]["MaximumConcurrency"] == WEBHOOK_QUEUE.maximum_concurrency


def test_each_mapping_feeds_its_own_queue_to_its_own_function_and_the_queue_redrives_to_the_dlq(
    templates: dict[str, Any],
) -> None:
    for stage, template in templates.items():
        # Given the webhook queue, its dead-letter queue and the two consumers
        queues = resources(template, "AWS::SQS::Queue")
        [queue_id] = [k for k, q in queues.items() if "RedrivePolicy" in q["Properties"]]
        [dlq_id] = [k for k, q in queues.items() if "RedrivePolicy" not in q["Properties"]]
        names = {
            k: f["Properties"].get("FunctionName")
            for k, f in resources(template, "AWS::Lambda::Function").items()
        }
        wiring = {
            names[m["Properties"]["FunctionName"]["Ref"]]: m["Properties"]["EventSourceArn"]
            for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
        }
        # Then the processor consumes the webhook queue and the reconciler its dead-letter queue
        assert wiring == {
            f"slotguard-{stage}-webhook-processor": {"Fn::GetAtt": [queue_id, "Arn"]},
            f"slotguard-{stage}-dlq-reconciler": {"Fn::GetAtt": [dlq_id, "Arn"]},
        }, stage
        # And the webhook queue's redrive policy sends to that dead-letter queue
        redrive = queues[queue_id]["Properties"]["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}


def test_proxy_requires_iam_and_tls(template: Any) -> None:
    [proxy] = resources(template, "AWS::RDS::DBProxy").values()
    props = proxy["Properties"]
    assert props["RequireTLS"] is True
    assert props["DefaultAuthScheme"] == "IAM_AUTH"
    assert props["EngineFamily"] == "POSTGRESQL"
    # End-to-end IAM: the proxy's own role may log in as the application user, nothing more
    proxy_role = proxy["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    proxy_policies = [
        p
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": proxy_role} in p["Properties"]["Roles"]
    ]
    statements = [s for p in proxy_policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert [s["Action"] for s in statements] == ["rds-db:connect"]
    assert "/slotguard_app" in json.dumps(statements[0]["Resource"])
    [instance] = resources(template, "AWS::RDS::DBInstance").values()
    assert instance["Properties"]["StorageEncrypted"] is True
    assert instance["Properties"]["EnableIAMDatabaseAuthentication"] is True
    assert instance["Properties"]["EngineVersion"].startswith("18")
    assert instance["Properties"].get("PubliclyAccessible") in (None, False)
    assert instance["Properties"]["DBSubnetGroupName"]  # the isolated subnets


def test_jwt_authorizer_on_every_route_but_the_webhook(template: Any) -> None:
    [authorizer] = resources(template, "AWS::ApiGatewayV2::Authorizer").values()
    assert authorizer["Properties"]["AuthorizerType"] == "JWT"
    assert authorizer["Properties"]["JwtConfiguration"] == {
        "Issuer": ISSUER,
        "Audience": ["slotguard-api"],
    }
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in resources(template, "AWS::ApiGatewayV2::Route").values()
    }
    # The deployed routes are exactly the shared route table (the local front door serves the same):
    # the webhook route on the edge's origin API (tests/test_edge.py), every other on the main API
    assert set(routes) == {r.route_key for r in ROUTES}
    main_api = main_api_id(template)
    for route in ROUTES:
        expected = "JWT" if route.authorized else "NONE"
        assert routes[route.route_key].get("AuthorizationType", "NONE") == expected, route.route_key
        assert (routes[route.route_key]["ApiId"] == {"Ref": main_api}) is not route.via_edge, route.route_key
    stages = resources(template, "AWS::ApiGatewayV2::Stage").values()
    assert len(stages) == 2  # the main API's and the webhook origin's
    for stage in stages:
        assert stage["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
        assert "DestinationArn" in stage["Properties"]["AccessLogSettings"]


def test_cleanup_schedule_targets_the_cleanup_function(template: Any) -> None:
    [rule] = resources(template, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"].startswith("rate(")
    target = rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]
    assert our_functions(template)[target]["Properties"]["FunctionName"] == "slotguard-dev-cleanup"


def test_every_function_is_arm64_python313_with_the_layer_and_tracing(template: Any) -> None:
    functions = our_functions(template)
    assert {f["Properties"]["FunctionName"] for f in functions.values()} == {
        f"slotguard-dev-{n}"
        for n in (
            "booking",
            "metrics",
            "webhook-receiver",
            "console",
            "webhook-processor",
            "dlq-reconciler",
            "cleanup",
            "migrations",
        )
    }
    [layer_id] = resources(template, "AWS::Lambda::LayerVersion")
    for fn in functions.values():
        props = fn["Properties"]
        assert props["Runtime"] == "python3.13"
        assert props["Architectures"] == ["arm64"]
        assert props["Layers"] == [{"Ref": layer_id}]
        # X-Ray: every function but the receiver (its traces were the largest X-Ray line at load)
        # and the console's static files
        untraced = props["FunctionName"].endswith(("-webhook-receiver", "-console"))
        assert props["TracingConfig"] == {"Mode": "PassThrough" if untraced else "Active"}
        assert props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    receiver = next(
        f for f in functions.values() if f["Properties"]["FunctionName"] == "slotguard-dev-webhook-receiver"
    )
    assert "VpcConfig" not in receiver["Properties"]  # needs only SQS and Secrets Manager


# Wildcard resources AWS requires, each with its reason.
ALLOWED_STAR_RESOURCE = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions",
    "cloudwatch:GetMetricStatistics": "CloudWatch metric reads have no resource-level permissions",
    "logs:PutRetentionPolicy": "the CDK LogRetention function: the RDS-created postgresql log group",
    "logs:DeleteRetentionPolicy": "the CDK LogRetention function: the RDS-created postgresql log group",
}


def test_no_wildcard_actions_and_only_required_wildcard_resources(template: Any) -> None:
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources_ = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            assert all("*" not in a for a in actions if a not in ("lambda:InvokeFunction",)), actions
            if "*" in resources_:
                assert set(actions) <= set(ALLOWED_STAR_RESOURCE), actions


# The alarm tests: tests/test_alarms.py


def _built_layer(template: Any) -> Path:
    """The built layer's python/ directory (mounted as /opt/python in a function)."""
    [layer] = resources(template, "AWS::Lambda::LayerVersion").values()
    asset_hash = layer["Properties"]["Content"]["S3Key"].removesuffix(".zip")
    return ROOT / "cdk.out" / f"asset.{asset_hash}" / "python"


def test_layer_asset_holds_aarch64_cp313_wheels(template: Any) -> None:
    python = _built_layer(template)
    assert list(python.glob("psycopg_binary/_psycopg.cpython-313-aarch64-linux-gnu.so"))
    assert list(python.glob("pydantic_core/_pydantic_core.cpython-313-aarch64-linux-gnu.so"))
    assert (python / "slotguard" / "migrations" / "0001_roles_and_extensions.sql").exists()
    assert (python / "slotguard" / "sql" / "functions" / "booking.sql").exists()
    assert not list(python.rglob("*x86_64*.so"))


def test_every_nag_acknowledgement_has_a_reason(template: Any) -> None:
    reasons = []
    for resource in template.to_json()["Resources"].values():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            reasons.append(rule)
    assert reasons
    assert all(len(r.get("reason", "")) >= 20 for r in reasons), reasons


def test_prod_keeps_its_data_and_dev_is_disposable(templates: dict[str, Any]) -> None:
    [prod_db] = resources(templates["prod"], "AWS::RDS::DBInstance").values()
    [dev_db] = resources(templates["dev"], "AWS::RDS::DBInstance").values()
    assert prod_db["Properties"]["DeletionProtection"] is True
    assert prod_db["Properties"]["MultiAZ"] is True
    assert prod_db["DeletionPolicy"] == "RetainExceptOnCreate"
    assert prod_db["Properties"]["BackupRetentionPeriod"] >= 7
    assert dev_db["Properties"]["DeletionProtection"] is False
    assert dev_db["DeletionPolicy"] in ("Delete", "Snapshot")
    assert main_queue(templates["prod"])["DeletionPolicy"] == "RetainExceptOnCreate"


def test_alarm_topic_key_lets_cloudwatch_encrypt_for_this_account_only(templates: dict[str, Any]) -> None:
    for stage, template in templates.items():
        # Given the alarm topic
        [topic] = resources(template, "AWS::SNS::Topic").values()
        # Then it is encrypted with a customer-managed key of this stack (not alias/aws/sns)
        key_ref = topic["Properties"]["KmsMasterKeyId"]
        assert "Fn::GetAtt" in key_ref or "Ref" in key_ref, key_ref
        key_id = (key_ref.get("Fn::GetAtt") or [key_ref.get("Ref")])[0]
        key = resources(template, "AWS::KMS::Key")[key_id]
        # And the key rotates
        assert key["Properties"]["EnableKeyRotation"] is True
        # And CloudWatch may use it, for alarms of this account only
        statements = key["Properties"]["KeyPolicy"]["Statement"]
        [cloudwatch] = [
            s for s in statements if s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
        ]
        assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
        assert cloudwatch["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        assert key["DeletionPolicy"] == ("RetainExceptOnCreate" if stage == "prod" else "Delete")


def test_cloudwatch_may_publish_to_the_alarm_topic_for_this_account_only(templates: dict[str, Any]) -> None:
    for template in templates.values():
        # Given the alarm topic, whose own policy (TLS only) replaces SNS's default policy
        [topic_id] = resources(template, "AWS::SNS::Topic")
        [policy] = [
            p
            for p in resources(template, "AWS::SNS::TopicPolicy").values()
            if p["Properties"]["Topics"] == [{"Ref": topic_id}]
        ]
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        # Then it allows CloudWatch's alarm actions to publish, for alarms of this account only
        [allow] = [
            s
            for s in statements
            if s["Effect"] == "Allow" and s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
        ]
        assert allow["Action"] == "sns:Publish"
        assert allow["Resource"] == {"Ref": topic_id}
        assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        assert "alarm:*" in json.dumps(allow["Condition"]["ArnLike"]["aws:SourceArn"])
        # And still refuses plain HTTP
        assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in statements)


def test_alarm_topic_subscribers_come_from_context(template: Any) -> None:
    # Given alarm_emails and alarm_https_endpoint in the context
    subscriptions = [s["Properties"] for s in resources(template, "AWS::SNS::Subscription").values()]
    # Then each e-mail address and the HTTPS endpoint is subscribed to the alarm topic
    assert sorted((s["Protocol"], s["Endpoint"]) for s in subscriptions) == [
        ("email", "lead@slotguard.dev"),
        ("email", "oncall@slotguard.dev"),
        ("https", CONTEXT["alarm_https_endpoint"]),
    ]


def test_http_api_5xx_alarms(template: Any) -> None:
    # Given the HTTP APIs (the resolver answers an exception with 500, the receiver an SQS or Secrets
    # Manager failure with 503: Lambda's Errors stays 0)
    apis = set(resources(template, "AWS::ApiGatewayV2::Api"))
    assert len(apis) == 2  # the main API and the webhook route's origin API behind the edge
    # Then an alarm watches each API's own 5xx count and notifies the alarm topic
    alarms = [
        a["Properties"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/ApiGateway" and a["Properties"].get("MetricName") == "5xx"
    ]
    watched = set()
    for alarm in alarms:
        [api] = [d["Value"]["Ref"] for d in alarm["Dimensions"] if d["Name"] == "ApiId"]
        watched.add(api)
        assert alarm["Statistic"] == "Sum"
        assert alarm["AlarmActions"] and alarm["OKActions"]
    assert watched == apis and len(alarms) == 2, alarms


def test_dead_letter_queue_keeps_messages_longer_than_the_source_queue(templates: dict[str, Any]) -> None:
    for template in templates.values():
        # Given a message's expiry counts from its first enqueue, also once it is in the DLQ
        main, dlq = main_queue(template), dead_letter_queue(template)
        # Then the DLQ keeps messages longer than the source queue does
        assert dlq["Properties"]["MessageRetentionPeriod"] > main["Properties"]["MessageRetentionPeriod"]


def test_prod_retains_the_master_secret_with_the_database(templates: dict[str, Any]) -> None:
    for stage, template in templates.items():
        [secret] = [
            s
            for k, s in resources(template, "AWS::SecretsManager::Secret").items()
            if "GenerateSecretString" in s["Properties"] and not k.startswith("WebhookEdge")
        ]
        [db] = resources(template, "AWS::RDS::DBInstance").values()
        # Then the secret lives exactly as long as the database it opens
        assert secret["DeletionPolicy"] == ("RetainExceptOnCreate" if stage == "prod" else "Delete")
        assert db["DeletionPolicy"] in (
            ("RetainExceptOnCreate",) if stage == "prod" else ("Delete", "Snapshot")
        )


def test_the_vpcs_default_security_group_allows_nothing(templates: dict[str, Any]) -> None:
    for template in templates.values():
        # Given the VPC, whose default security group would allow all traffic between its members
        [vpc_id] = resources(template, "AWS::EC2::VPC")
        # Then a custom resource strips its rules (nothing uses it)
        [restrict] = resources(template, "Custom::VpcRestrictDefaultSG").values()
        assert restrict["Properties"]["DefaultSecurityGroupId"] == {
            "Fn::GetAtt": [vpc_id, "DefaultSecurityGroup"]
        }


def test_what_a_retained_database_stands_in_is_retained_with_it(templates: dict[str, Any]) -> None:
    for stage, template in templates.items():
        # Given the database instance, its subnet group and its security groups
        [db] = resources(template, "AWS::RDS::DBInstance").values()
        [subnet_group] = resources(template, "AWS::RDS::DBSubnetGroup").values()
        subnets = resources(template, "AWS::EC2::Subnet")
        groups = resources(template, "AWS::EC2::SecurityGroup")
        [vpc] = resources(template, "AWS::EC2::VPC").values()
        stood_in = [subnets[ref["Ref"]] for ref in subnet_group["Properties"]["SubnetIds"]]
        stood_in += [groups[ref["Fn::GetAtt"][0]] for ref in db["Properties"]["VPCSecurityGroups"]]
        stood_in.append(vpc)
        # Then in prod they outlive the stack with the instance, so a destroy or the rollback of a
        # failed first deploy never tries to delete what the retained instance still uses
        expected = "RetainExceptOnCreate" if stage == "prod" else "Delete"
        assert db["DeletionPolicy"] == expected or (stage != "prod" and db["DeletionPolicy"] == "Snapshot")
        assert [r.get("DeletionPolicy", "Delete") for r in stood_in] == [expected] * len(stood_in)
        if stage == "prod":
            # and only those: the functions' subnets and NAT gateways go with the stack
            others = [s for s in subnets.values() if s not in stood_in]
            assert others and all(s.get("DeletionPolicy", "Delete") == "Delete" for s in others)


PHYSICAL_NAME_PROPERTIES = (
    "QueueName",
    "LogGroupName",
    "FunctionName",
    "DBInstanceIdentifier",
    "Name",
    "AliasName",
    "TopicName",
)


def test_retained_resources_have_no_fixed_names(templates: dict[str, Any]) -> None:
    # Given a prod stack destroyed while its data is retained
    retained = {
        logical_id: r
        for logical_id, r in templates["prod"].to_json()["Resources"].items()
        if r.get("DeletionPolicy") == "RetainExceptOnCreate"
    }
    assert retained
    # Then no retained resource has a fixed physical name a new stack of the same stage would collide with
    for logical_id, resource in retained.items():
        props = resource.get("Properties", {})
        fixed = [p for p in PHYSICAL_NAME_PROPERTIES if isinstance(props.get(p), str)]
        assert not fixed, (logical_id, resource["Type"], fixed)


def test_database_storage_is_gp3_and_its_exported_log_has_a_retention(templates: dict[str, Any]) -> None:
    for template in templates.values():
        [db_id, db] = next(iter(resources(template, "AWS::RDS::DBInstance").items()))
        assert db["Properties"]["StorageType"] == "gp3"
        assert db["Properties"]["EnableCloudwatchLogsExports"] == ["postgresql"]
        # Then the log group RDS exports to has a retention
        retentions = [
            r["Properties"]
            for r in template.to_json()["Resources"].values()
            if r["Type"] == "Custom::LogRetention"
            and "/postgresql" in json.dumps(r["Properties"]["LogGroupName"])
        ]
        assert len(retentions) == 1
        assert {"Ref": db_id} in retentions[0]["LogGroupName"]["Fn::Join"][1]
        assert retentions[0]["RetentionInDays"] > 0


def test_webhook_secret_prefix_is_per_stage_and_scopes_the_receiver(templates: dict[str, Any]) -> None:
    prefixes = {}
    for stage, template in templates.items():
        [receiver] = [
            f["Properties"]
            for f in resources(template, "AWS::Lambda::Function").values()
            if f["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME")
            == "webhook_receiver"
        ]
        prefix = receiver["Environment"]["Variables"]["WEBHOOK_SECRET_PREFIX"]
        prefixes[stage] = prefix
        assert f"/{stage}/" in prefix
        # Then the receiver may read secrets under its own stage's prefix only
        reads = [
            json.dumps(s["Resource"])
            for p in resources(template, "AWS::IAM::Policy").values()
            for s in p["Properties"]["PolicyDocument"]["Statement"]
            if s["Action"] == "secretsmanager:GetSecretValue" and "webhooks" in json.dumps(s["Resource"])
        ]
        assert reads
        assert all(f"secret:{prefix}*" in r for r in reads), reads
    assert prefixes["dev"] != prefixes["prod"]


def test_master_secret_rotation_is_scheduled(templates: dict[str, Any]) -> None:
    for template in templates.values():
        [schedule] = resources(template, "AWS::SecretsManager::RotationSchedule").values()
        props = schedule["Properties"]
        assert props["HostedRotationLambda"]["RotationType"] == "PostgreSQLSingleUser"
        assert props["RotationRules"]
        # And not at creation, where it would race the migrations' login with the master password
        assert props["RotateImmediatelyOnUpdate"] is False
        # And rotation is done, not acknowledged away (the one acknowledged is the webhook edge's
        # header secret, which a deploy changes with CloudFront's origin: tests/test_edge.py)
        acknowledged = json.dumps(
            [
                r.get("Metadata", {}).get("cdk_nag", {})
                for k, r in template.to_json()["Resources"].items()
                if not k.startswith("WebhookEdgeOriginSecret")
            ]
        )
        assert "AwsSolutions-SMG4" not in acknowledged


def test_engine_is_an_exact_minor_of_the_major_from_context(templates: dict[str, Any]) -> None:
    from infra.config import POSTGRES_VERSIONS

    for template in templates.values():
        [db] = resources(template, "AWS::RDS::DBInstance").values()
        [group] = resources(template, "AWS::RDS::DBParameterGroup").values()
        # Then the default major is pinned to an exact minor that RDS does not move under us
        assert db["Properties"]["EngineVersion"] == POSTGRES_VERSIONS[18]
        assert db["Properties"]["AutoMinorVersionUpgrade"] is False
        assert group["Properties"]["Family"] == "postgres18"


def test_postgres_major_17_is_the_documented_fallback() -> None:
    from aws_cdk.assertions import Template

    from infra.app import build_app
    from infra.config import POSTGRES_VERSIONS

    # Given -c postgres_major=17
    app = build_app({**CONTEXT, "postgres_major": "17"})
    template = Template.from_stack(app.node.find_child("Slotguard-dev"))  # type: ignore[arg-type]
    [db] = resources(template, "AWS::RDS::DBInstance").values()
    [group] = resources(template, "AWS::RDS::DBParameterGroup").values()
    # Then the instance runs the pinned 17 minor with its parameter group family
    assert db["Properties"]["EngineVersion"] == POSTGRES_VERSIONS[17]
    assert POSTGRES_VERSIONS[17].startswith("17.")
    assert group["Properties"]["Family"] == "postgres17"
    # And a major nobody has checked behind RDS Proxy is refused, naming the context key
    with pytest.raises(ValueError, match="postgres_major"):
        build_app({**CONTEXT, "postgres_major": "16"})


@pytest.mark.parametrize(
    "issuer",
    [None, "https://auth.example.com/", "http://idp.slotguard.dev/", "https://issuer.invalid/", "not a url"],
)
def test_a_deployable_stage_needs_a_real_jwt_issuer_and_audience(issuer: str | None) -> None:
    from infra.app import build_app

    # Given context without a real issuer (missing, a documentation placeholder, not https)
    context = {k: v for k, v in CONTEXT.items() if k != "jwt_issuer"}
    if issuer is not None:
        context["jwt_issuer"] = issuer
    # Then the app refuses to synthesize, naming the context keys to set
    with pytest.raises(ValueError, match="jwt_issuer") as refused:
        build_app(context)
    assert "jwt_audience" in str(refused.value)
    assert "synth_only" in str(refused.value)


def test_synth_only_builds_a_template_without_an_identity_provider() -> None:
    from aws_cdk.assertions import Template

    from infra.app import build_app

    # Given no issuer nor audience, and the explicit synth_only flag (make synth, CI)
    context = {k: v for k, v in CONTEXT.items() if not k.startswith("jwt_")}
    app = build_app({**context, "synth_only": "true"})
    template = Template.from_stack(app.node.find_child("Slotguard-dev"))  # type: ignore[arg-type]
    # Then the authorizer carries an issuer that can never validate a token
    [authorizer] = resources(template, "AWS::ApiGatewayV2::Authorizer").values()
    assert authorizer["Properties"]["JwtConfiguration"]["Issuer"].endswith(".invalid/")
    # And the default is no CORS at all
    api = resources(template, "AWS::ApiGatewayV2::Api")[main_api_id(template)]
    assert "CorsConfiguration" not in api["Properties"]


def test_cors_origins_come_from_context() -> None:
    from aws_cdk.assertions import Template

    from infra.app import build_app

    app = build_app({**CONTEXT, "cors_origins": "https://app.slotguard.dev,https://admin.slotguard.dev"})
    template = Template.from_stack(app.node.find_child("Slotguard-dev"))  # type: ignore[arg-type]
    api = resources(template, "AWS::ApiGatewayV2::Api")[main_api_id(template)]
    cors = api["Properties"]["CorsConfiguration"]
    assert cors["AllowOrigins"] == ["https://app.slotguard.dev", "https://admin.slotguard.dev"]
    assert "authorization" in [h.lower() for h in cors["AllowHeaders"]]
    assert sorted(cors["AllowMethods"]) == ["GET", "POST", "PUT"]


def webhook_origin_stage(template: Any) -> Any:
    """The stage of the webhook route's origin API (behind CloudFront: tests/test_edge.py)."""
    [stage] = [
        v
        for v in resources(template, "AWS::ApiGatewayV2::Stage").values()
        if v["Properties"]["ApiId"] != {"Ref": main_api_id(template)}
    ]
    return stage


def test_the_public_webhook_route_has_its_own_throttle(template: Any) -> None:
    from slotguard.topology import API_THROTTLE, WEBHOOK_THROTTLE

    stage = main_stage(template)
    defaults = stage["Properties"]["DefaultRouteSettings"]
    assert defaults["ThrottlingRateLimit"] == API_THROTTLE["rate_limit"]
    [webhook_route] = [r for r in ROUTES if r.function == "webhook_receiver"]
    # Then junk on the unauthenticated webhook route cannot use up the authenticated routes' budget:
    # the route is on an API of its own, throttled on its own
    assert webhook_route.route_key not in stage["Properties"]["RouteSettings"]
    webhook = webhook_origin_stage(template)["Properties"]["DefaultRouteSettings"]
    assert webhook["ThrottlingRateLimit"] == WEBHOOK_THROTTLE["rate_limit"]
    assert webhook["ThrottlingBurstLimit"] == WEBHOOK_THROTTLE["burst_limit"]
    assert WEBHOOK_THROTTLE != API_THROTTLE


# RDS's default max_connections is LEAST({DBInstanceClassMemory/9531392}, 5000), where
# DBInstanceClassMemory is the class's memory less what RDS keeps for itself: rounded down here.
MAX_CONNECTIONS = {"db.t4g.micro": 80, "db.m7g.large": 800}


def database_facing(template: Any) -> dict[str, dict[str, Any]]:
    """Functions that open PostgreSQL connections: through the proxy (DB_HOST) or, for the
    deploy-time migrations, to the instance."""
    return {
        logical_id: f["Properties"]
        for logical_id, f in resources(template, "AWS::Lambda::Function").items()
        if {"DB_HOST", "DB_ADMIN_SECRET_ARN"}
        & set(f["Properties"].get("Environment", {}).get("Variables", {}))
    }


def proxy_borrow_timeout_s(template: Any) -> int:
    [group] = resources(template, "AWS::RDS::DBProxyTargetGroup").values()
    return int(group["Properties"]["ConnectionPoolConfigurationInfo"]["ConnectionBorrowTimeout"])


def role_statement_timeouts_s() -> dict[str, float]:
    """`ALTER ROLE <role> SET statement_timeout = '<n>s'` from the migrations (the last one wins)."""
    import re

    found: dict[str, float] = {}
    for path in sorted((ROOT / "layers" / "slotguard" / "migrations").glob("*.sql")):
        for role, value in re.findall(
            r"ALTER ROLE (\w+) SET statement_timeout = '(\d+)s'", path.read_text(), re.IGNORECASE
        ):
            found[role] = float(value)
    return found


def test_the_proxy_and_the_connect_timeout_answer_before_the_function_times_out(
    templates: dict[str, Any],
) -> None:
    statement_timeouts = role_statement_timeouts_s()
    assert statement_timeouts["slotguard_app"] > 0
    for template in templates.values():
        borrow_s = proxy_borrow_timeout_s(template)
        for props in database_facing(template).values():
            env = props["Environment"]["Variables"]
            # Given a connect timeout below the function's timeout
            connect_s = int(env["DB_CONNECT_TIMEOUT_S"])
            statement_s = statement_timeouts.get(env.get("DB_USER", ""), 0.0)
            # Then a connect and a reconnect, the proxy's borrow wait and the login role's statement
            # timeout (which bounds a booking's lock wait too) all end before the function does: the
            # caller gets a clean 503 (database_unavailable or busy), never a Lambda timeout
            worst_case_s = 2 * connect_s + (borrow_s if "DB_HOST" in env else 0) + statement_s
            assert worst_case_s < props["Timeout"], (env, borrow_s, statement_s)


def test_database_facing_concurrency_fits_the_proxys_connection_budget(templates: dict[str, Any]) -> None:
    for stage, template in templates.items():
        [instance] = resources(template, "AWS::RDS::DBInstance").values()
        [group] = resources(template, "AWS::RDS::DBProxyTargetGroup").values()
        percent = group["Properties"]["ConnectionPoolConfigurationInfo"]["MaxConnectionsPercent"]
        budget = MAX_CONNECTIONS[instance["Properties"]["DBInstanceClass"]] * percent // 100
        mappings = {
            m["Properties"]["FunctionName"]["Ref"]: m["Properties"]
            .get("ScalingConfig", {})
            .get("MaximumConcurrency")
            for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
        }
        total = 0
        for logical_id, props in database_facing(template).items():
            # Given every database-facing function has a bound: reserved or ESM maximum concurrency
            bound = props.get("ReservedConcurrentExecutions") or mappings.get(logical_id)
            assert bound, f"{stage}: {logical_id} has unbounded concurrency"
            total += bound
        # Then all of them at once fit the connections the proxy may open
        assert total <= budget, (stage, total, budget)


def test_migrations_run_again_for_a_new_instance_or_new_migration_code(template: Any) -> None:
    from infra.constructs.migrations import migration_code_digest, migrations_digest

    [schema] = template.find_resources("Custom::SlotguardSchema").values()
    [instance_id] = resources(template, "AWS::RDS::DBInstance")
    props = schema["Properties"]
    # Then a replaced instance (new resource id), new SQL files or a new runner all change the
    # custom resource's properties, so CloudFormation sends an Update and the migrations run
    assert props["DatabaseResourceId"] == {"Fn::GetAtt": [instance_id, "DbiResourceId"]}
    assert props["Migrations"] == migrations_digest()
    assert props["RunnerCode"] == migration_code_digest()
    assert migration_code_digest() != migrations_digest()


def test_only_a_disposable_stage_migrates_an_empty_replacement_of_its_instance(
    templates: dict[str, Any],
) -> None:
    from slotguard.db.migrate import migrations_digest

    for stage, template in templates.items():
        # Given the migrations function and the custom resource it serves
        [fn] = [
            f
            for f in resources(template, "AWS::Lambda::Function").values()
            if "DB_ADMIN_SECRET_ARN" in f["Properties"].get("Environment", {}).get("Variables", {})
        ]
        env = fn["Properties"]["Environment"]["Variables"]
        # Then prod refuses to move onto an empty replaced instance, dev (disposable) migrates it
        assert env["DB_REPLACEMENT"] == ("refuse" if stage == "prod" else "migrate"), stage
        # And its login (TLS without a verified certificate) never answers a clear-text password request
        assert env["DB_REQUIRE_AUTH"] == "scram-sha-256,md5"
        # And the property it compares on a rollback is the digest the handler computes itself
        [schema] = resources(template, "Custom::SlotguardSchema").values()
        assert schema["Properties"]["Migrations"] == migrations_digest()


def test_allow_database_replacement_lets_prod_migrate_a_new_instance() -> None:
    from aws_cdk import App

    from infra.config import stage_config

    app = App(context={"synth_only": "true", "allow_database_replacement": "true"})
    assert stage_config(app.node, "prod").database_replacement == "migrate"
    assert stage_config(App(context={"synth_only": "true"}).node, "prod").database_replacement == "refuse"


def test_the_receive_budget_outlasts_an_hour_long_database_outage(template: Any) -> None:
    from slotguard.config import RetryPolicy

    main = main_queue(template)
    receives = main["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    [processor] = [
        f["Properties"]
        for f in our_functions(template).values()
        if f["Properties"]["FunctionName"] == "slotguard-dev-webhook-processor"
    ]
    env = processor["Environment"]["Variables"]
    policy = RetryPolicy(
        webhook_max_attempts=env["WEBHOOK_MAX_ATTEMPTS"],
        webhook_backoff_base_s=env["WEBHOOK_BACKOFF_BASE_S"],
        webhook_backoff_cap_s=env["WEBHOOK_BACKOFF_CAP_S"],
    )
    # Given a message that meets a database outage at every receive, hidden for the processor's
    # database-down backoff each time (the shortest draw of its jitter)
    from slotguard.services.webhook_processor import backoff_seconds

    hidden_s = sum(backoff_seconds(n, policy, rand=lambda: 0.0) for n in range(1, receives))
    # Then it is not dead-lettered by SQS before an hour-long outage (a failover, a minor upgrade,
    # a restore) is over
    assert hidden_s >= 3600, hidden_s


# Configuration each handler validates at import (values are never used: nothing connects at init).
HANDLER_ENV = {
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "DB_HOST": "proxy.invalid",
    "DB_AUTH": "iam",
    "DB_SSLMODE": "require",
    "WEBHOOK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
    "WEBHOOK_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dlq",
    "WORKER_STATE_SOURCE": "lambda:00000000-0000-0000-0000-000000000000",
    "DB_ADMIN_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x",
}


def modules_imported_at_init(handler: str) -> list[str]:
    """The modules a handler's import (its Lambda init) loads, from a fresh interpreter."""
    import subprocess
    import sys

    path = str(ROOT / "functions" / handler / "handler.py")
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('handler', {path!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(json.dumps(sorted(n for n, m in list(sys.modules.items()) if getattr(m, '__file__', None))))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AWS_ENDPOINT_URL")}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**env, **HANDLER_ENV}, capture_output=True, text=True, check=True
    )
    names: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return names


def test_layer_holds_python313_bytecode_for_every_module_a_handler_imports_at_init(template: Any) -> None:
    python = _built_layer(template)
    missing: dict[str, list[str]] = {}
    checked = 0
    for handler in sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "handler.py").exists()):
        for name in modules_imported_at_init(handler):
            parts = name.split(".")
            if not (python / parts[0]).exists() and not (python / f"{parts[0]}.py").exists():
                continue  # the standard library (the runtime's own, already compiled)
            base = python.joinpath(*parts)
            source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
            if not source.exists():
                continue  # an extension module (.so)
            checked += 1
            # Then its CPython 3.13 bytecode is in the layer, next to it
            if not (source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc").exists():
                missing.setdefault(handler, []).append(name)
    assert checked > 200
    assert not missing, missing


@pytest.mark.parametrize("handler", ["booking", "cleanup", "dlq_reconciler"])
def test_functions_that_call_no_aws_api_do_not_load_the_xray_sdk_or_boto3_at_init(handler: str) -> None:
    # Given a function that talks only to the database (its IAM token is signed locally)
    loaded = set(modules_imported_at_init(handler))
    # Then its init loads neither the X-Ray SDK nor boto3 / botocore's session (see decisions.md)
    assert not {"aws_xray_sdk", "boto3", "botocore.session"} & loaded


def test_the_webhook_receiver_does_not_load_the_database_layer_at_init() -> None:
    # Given the receiver, which verifies and enqueues and never touches the database
    loaded = set(modules_imported_at_init("webhook_receiver"))
    # Then its init loads neither psycopg nor the data-access layer (the metrics' processor types
    # used to bring both)
    assert not {"psycopg", "slotguard.db.connection", "slotguard.services.webhook_processor"} & loaded


def _db_users_each_function_may_connect_as(template: Any) -> dict[str, set[str]]:
    """function name -> the database users its role may `rds-db:connect` as."""
    roles = {
        fn["Properties"]["Role"]["Fn::GetAtt"][0]: fn["Properties"]["FunctionName"]
        for fn in our_functions(template).values()
    }
    users: dict[str, set[str]] = {name: set() for name in roles.values()}
    for policy in resources(template, "AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            name = roles.get(role.get("Ref")) if isinstance(role, dict) else None
            if name is None:
                continue
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if statement["Action"] == "rds-db:connect":
                    text = json.dumps(statement["Resource"])
                    users[name] |= {u for u in ("slotguard_app", "slotguard_retention") if f"/{u}" in text}
    return users


def test_the_cleanup_logs_in_as_the_retention_role_and_nothing_else_does(template: Any) -> None:
    # Given the dev stage
    functions = {fn["Properties"]["FunctionName"]: fn for fn in our_functions(template).values()}
    users = _db_users_each_function_may_connect_as(template)
    # Then the cleanup connects as slotguard_retention, and only it may
    cleanup = functions["slotguard-dev-cleanup"]["Properties"]["Environment"]["Variables"]
    assert cleanup["DB_USER"] == "slotguard_retention"
    assert users["slotguard-dev-cleanup"] == {"slotguard_retention"}
    for name in ("booking", "webhook-processor", "dlq-reconciler", "metrics"):
        assert users[f"slotguard-dev-{name}"] == {"slotguard_app"}, name
        assert functions[f"slotguard-dev-{name}"]["Properties"]["Environment"]["Variables"]["DB_USER"] == (
            "slotguard_app"
        )
    # And the proxy itself may log in as both users (end-to-end IAM)
    [proxy] = resources(template, "AWS::RDS::DBProxy").values()
    proxy_role = proxy["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": proxy_role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    text = json.dumps([s["Resource"] for s in statements])
    assert "/slotguard_app" in text and "/slotguard_retention" in text


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_slow_statement_logs_carry_no_bind_parameters(templates: dict[str, Any], stage: str) -> None:
    [group] = resources(templates[stage], "AWS::RDS::DBParameterGroup").values()
    params = group["Properties"]["Parameters"]
    assert params["log_parameter_max_length"] == "0"
    assert params["log_parameter_max_length_on_error"] == "0"


def test_functions_verify_the_proxys_certificate_before_sending_an_iam_token(template: Any) -> None:
    import ssl

    from infra.names import PROXY_CA_BUNDLE

    # Given every function that reaches the database through RDS Proxy with an IAM token
    layer_python = _built_layer(template)
    for fn in our_functions(template).values():
        env = fn["Properties"].get("Environment", {}).get("Variables", {})
        if env.get("DB_AUTH") != "iam":
            continue
        # Then it verifies whom it talks to, against a root file the layer ships (psycopg-binary's
        # own OpenSSL would look for "system" roots in a directory no Lambda runtime has)
        name = fn["Properties"]["FunctionName"]
        assert (env["DB_SSLMODE"], env["DB_SSLROOTCERT"]) == ("verify-full", PROXY_CA_BUNDLE), name
    # And that file is in the built layer, where /opt/python mounts it, holding the roots that AWS
    # Certificate Manager's certificates (the proxy's) chain to
    bundle = layer_python / PROXY_CA_BUNDLE.removeprefix("/opt/python/")
    context = ssl.create_default_context(cafile=str(bundle))
    subjects = {dict(rdn[0] for rdn in ca["subject"])["commonName"] for ca in context.get_ca_certs()}
    expected = {"Amazon Root CA 1", "Amazon Root CA 3", "Starfield Services Root Certificate Authority - G2"}
    assert expected <= subjects


def test_psycopg_binarys_openssl_has_no_system_roots_of_its_own() -> None:
    import ctypes

    import psycopg_binary

    # Given the OpenSSL that psycopg-binary bundles (the layer ships the same build for aarch64)
    libs = Path(psycopg_binary.__file__).parent.parent / "psycopg_binary.libs"
    [libcrypto_path] = libs.glob("libcrypto-*.so*")
    libcrypto = ctypes.CDLL(str(libcrypto_path))
    libcrypto.X509_get_default_cert_file.restype = ctypes.c_char_p
    # When libpq is asked for sslrootcert=system, it loads OpenSSL's default locations
    default_file = libcrypto.X509_get_default_cert_file().decode()
    # Then they are the wheel's own directory, which no Lambda runtime (and not this machine) has:
    # hence the explicit bundle above
    assert default_file.startswith("/usr/lib/psycopg-openssl/"), default_file
    assert not Path(default_file).exists()


def test_the_localstack_stage_holds_what_localstacks_open_source_runtime_hosts_from_the_same_constructs(
    template: Any,
) -> None:
    from aws_cdk.assertions import Template

    from infra.app import build_app

    # Given the LocalStack stage, synthesized without any identity provider (it has no API)
    app = build_app({"stage": "localstack"}, outdir=str(ROOT / "cdk.out"))
    app.synth()  # cdk-nag clean, like the other stages
    local = Template.from_stack(app.node.find_child("Slotguard-localstack")).to_json()  # type: ignore[arg-type]
    dev = template.to_json()
    kinds = {r["Type"] for r in local["Resources"].values()}
    # Then it holds only what the open-source runtime can host: no function, database, API nor VPC
    assert kinds == {
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::KMS::Key",
        "AWS::Events::Rule",
    }
    # And every one of them is the dev stage's resource of the same construct (same logical ID, type)
    for logical_id, resource in local["Resources"].items():
        assert dev["Resources"][logical_id]["Type"] == resource["Type"], logical_id
    for kind in ("AWS::SQS::Queue", "AWS::CloudWatch::Alarm", "AWS::Events::Rule"):
        assert {k for k, r in local["Resources"].items() if r["Type"] == kind} == {
            k for k, r in dev["Resources"].items() if r["Type"] == kind
        }
    assert set(local["Outputs"]) >= {"WebhookQueueUrl", "WebhookDeadLetterQueueUrl", "WebhookSecretPrefix"}


def test_preflight_refuses_an_account_whose_concurrency_quota_cannot_hold_the_reservations(
    templates: dict[str, Any],
) -> None:
    from infra.preflight import Account, problem, reservations

    for stage, template in templates.items():
        # Given the stage's reserved concurrency, read from its template
        wanted = reservations(template.to_json())
        assert wanted and all(name.startswith(f"slotguard-{stage}-") for name in wanted)
        needed = sum(wanted.values())
        # When the account is new (a quota of 10), the deploy would fail late: refused up front,
        # saying which quota to ask for
        found = problem(Account(10, 10), wanted, {})
        assert found is not None and f"at least {needed + 100}" in found, found
        # And an account with room, or one where this stage already holds its reservations, passes
        assert problem(Account(needed + 100, needed + 100), wanted, {}) is None
        assert problem(Account(needed + 100, 100), wanted, dict(wanted)) is None
        assert problem(Account(needed + 99, needed + 99), wanted, {}) is not None


def test_preflight_reads_what_the_stages_existing_functions_reserve(aws: str) -> None:

    from infra.preflight import reserved_now
    from slotguard.aws.clients import client
    from tests.conftest import create_moto_function

    # Given one of the stage's functions deployed with a reservation, and one not deployed yet
    lam = client("lambda")
    name = f"slotguard-preflight-{os.getpid()}-booking"
    create_moto_function(name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    # When the preflight asks Lambda
    found = reserved_now(lam, [name, f"slotguard-preflight-{os.getpid()}-metrics"])
    # Then it counts the existing reservation (given back when the stack changes it) and skips the other
    assert found == {name: 7}


def test_a_failed_first_prod_deploy_leaves_nothing_behind(templates: dict[str, Any]) -> None:
    # Given prod, which keeps its data (database, secret, queues, logs, alarm key, what the database
    # stands in)
    prod = templates["prod"].to_json()["Resources"]
    kept = {k: r for k, r in prod.items() if r.get("DeletionPolicy", "Delete") != "Delete"}
    assert {r["Type"] for r in kept.values()} >= {
        "AWS::RDS::DBInstance",
        "AWS::SecretsManager::Secret",
        "AWS::SQS::Queue",
        "AWS::Logs::LogGroup",
        "AWS::KMS::Key",
        "AWS::EC2::VPC",
    }
    # Then each is retained on update and delete, but deleted when the deploy that created it fails
    # (CloudFormation's RetainExceptOnCreate): a failed first deploy leaves no orphan to pay for nor
    # to collide with
    for logical_id, resource in kept.items():
        assert resource["DeletionPolicy"] == "RetainExceptOnCreate", logical_id
        assert resource.get("UpdateReplacePolicy") == "Retain", logical_id


def test_every_log_group_expires_including_the_cdk_helper_functions(templates: dict[str, Any]) -> None:
    for stage, template in templates.items():
        days = 90 if stage == "prod" else 14
        groups = resources(template, "AWS::Logs::LogGroup")
        # Given every log group of the stack
        assert all(g["Properties"].get("RetentionInDays") == days for g in groups.values()), stage
        # Then every function of the template (ours and the CDK's own helpers: LogRetention, the
        # default security group's restriction, the migrations' provider) logs to one of them
        for logical_id, fn in resources(template, "AWS::Lambda::Function").items():
            target = fn["Properties"].get("LoggingConfig", {}).get("LogGroup")
            assert isinstance(target, dict) and target.get("Ref") in groups, (stage, logical_id)


def test_the_proxy_role_is_the_stacks_own_not_found_by_an_internal_id(template: Any) -> None:
    from infra.constructs import database

    # Given the proxy
    [proxy] = resources(template, "AWS::RDS::DBProxy").values()
    role_id = proxy["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    role = resources(template, "AWS::IAM::Role")[role_id]
    # Then its role is the one the Database construct makes and passes as `role=`
    assert role_id.startswith("DatabaseProxyRole")
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "rds.amazonaws.com"
    }
    assert 'find_child("IAMRole")' not in Path(database.__file__).read_text()


def test_no_configured_limit_is_the_first_bottleneck_below_the_promised_load(
    templates: dict[str, Any],
) -> None:
    from slotguard.topology import CAPACITY, PROMISED_LOAD

    for stage, template in templates.items():
        load = PROMISED_LOAD[stage]
        api_stage = main_stage(template)
        settings = api_stage["Properties"]
        # Given the load the stage promises (docs/capacity.md), with the model's headroom
        headroom = CAPACITY.headroom
        # Then API Gateway's stage throttle holds the JWT routes' requests (bookings and reads)
        api_rps = load.bookings_per_s + load.reads_per_s
        assert settings["DefaultRouteSettings"]["ThrottlingRateLimit"] >= headroom * api_rps, stage
        assert settings["RouteSettings"]["POST /appointments"]["ThrottlingRateLimit"] >= headroom * api_rps
        # And the webhook route's throttle (its origin API's) the promised webhooks
        webhook_throttle = webhook_origin_stage(template)["Properties"]["DefaultRouteSettings"]
        assert webhook_throttle["ThrottlingRateLimit"] >= headroom * load.webhooks_per_s
        # (the edge's per-org and per-sender limits in front of it: tests/test_edge.py)
        # And the booking function's reserved concurrency the requests in flight (Little's law at the
        # model's request duration, with lock waits), without reserving many times that
        functions = {
            f["Properties"]["FunctionName"]: f["Properties"] for f in our_functions_of(template, stage)
        }
        in_flight = api_rps * CAPACITY.booking_request_s + load.bookings_per_s * CAPACITY.busy_share * 3
        reserved = functions[f"slotguard-{stage}-booking"]["ReservedConcurrentExecutions"]
        assert headroom * in_flight <= reserved, (stage, reserved, in_flight)
        if stage == "prod":
            assert reserved <= 4 * headroom * in_flight, (stage, reserved, in_flight)
        # And the processor's event source mapping the promised webhooks
        [mapping] = [
            m["Properties"]
            for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
            if m["Properties"].get("MaximumBatchingWindowInSeconds") is not None
        ]
        processed = mapping["ScalingConfig"]["MaximumConcurrency"] * CAPACITY.processor_records_per_s
        assert processed >= headroom * load.webhooks_per_s, (stage, processed)


def our_functions_of(template: Any, stage: str) -> list[dict[str, Any]]:
    return [
        f
        for f in resources(template, "AWS::Lambda::Function").values()
        if str(f["Properties"].get("FunctionName", "")).startswith(f"slotguard-{stage}-")
    ]


def test_the_access_log_keeps_what_on_call_reads_and_no_more(template: Any) -> None:
    from bench.log_volume import access_log_line

    stage = main_stage(template)
    fields = json.loads(stage["Properties"]["AccessLogSettings"]["Format"])
    # Then each request's line says which request, from where, which route, how it ended and why
    assert set(fields) == {
        "requestId",
        "ip",
        "routeKey",
        "status",
        "latency",
        "integrationError",
        "authorizerError",
    }
    # And not when: every log event carries its own timestamp (47 bytes a request saved)
    assert len(access_log_line().encode()) <= 185


def test_the_console_function_serves_files_with_no_privilege_beyond_logs_and_traces(template: Any) -> None:
    # Given the operations console's function
    [console] = [
        f for f in our_functions(template).values() if f["Properties"]["FunctionName"].endswith("-console")
    ]
    props = console["Properties"]
    role = props["Role"]["Fn::GetAtt"][0]
    # Then it runs outside the VPC, with no database or AWS setting in its environment
    assert "VpcConfig" not in props
    assert set(props["Environment"]["Variables"]) == {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }
    # And its role may write traces only (its logs through the AWS-managed basic execution policy)
    actions = {
        action
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert actions == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    managed = json.dumps(resources(template, "AWS::IAM::Role")[role]["Properties"]["ManagedPolicyArns"])
    assert "AWSLambdaBasicExecutionRole" in managed and "VPCAccess" not in managed
    # And the API serves its two routes without an authorizer, each with the public routes' throttle
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in resources(template, "AWS::ApiGatewayV2::Route").values()
        if "/console" in r["Properties"]["RouteKey"]
    }
    assert set(routes) == {"GET /console", "GET /console/{asset}"}
    stage = main_stage(template)
    for key in routes:
        assert stage["Properties"]["RouteSettings"][key]["ThrottlingRateLimit"] > 0
