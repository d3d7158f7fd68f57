"""The CDK app: `cdk synth` / `cdk deploy` (see cdk.json). Stage and JWT settings come from context."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import deploy_region, stage_config, stages
from infra.constructs.edge import EDGE_REGION, WebhookEdgeAclStack
from infra.localstack_stack import STAGE as LOCALSTACK_STAGE
from infra.localstack_stack import SlotguardLocalStackStack
from infra.names import Names
from infra.stack import SlotguardStack


def build_app(context: dict[str, object] | None = None, outdir: str | None = None) -> cdk.App:
    app = cdk.App(context=context, outdir=outdir)
    for stage in stages(app.node):
        config = stage_config(app.node, stage)
        if stage == LOCALSTACK_STAGE:  # what LocalStack's open-source runtime can host
            SlotguardLocalStackStack(
                app,
                Names(config.stage).stack,
                config=config,
                description="slotguard (localstack): webhook queues, alarms, dashboard, cleanup rule",
            )
            continue
        names = Names(config.stage)
        # The webhook edge's web ACL must be in us-east-1 (CloudFront's); the stage's stack, in its
        # own Region, reads its ARN from there (infra/constructs/edge.py). The account is the CLI's
        # credentials' (left unresolved: the stack stays free of account lookups).
        edge = WebhookEdgeAclStack(
            app,
            names.edge_stack,
            config=config,
            env=cdk.Environment(region=EDGE_REGION),
            description=f"slotguard ({config.stage}): the webhook route's web ACL (CloudFront, us-east-1)",
        )
        stack = SlotguardStack(
            app,
            names.stack,
            config=config,
            env=cdk.Environment(region=deploy_region(app.node)),
            description=f"slotguard ({config.stage}): booking and webhooks",
        )
        stack.add_stack_dependency(edge, "its distribution reads the web ACL's ARN from us-east-1")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))
    return app


if __name__ == "__main__":
    build_app().synth()
