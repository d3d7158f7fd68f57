"""The CDK app: `cdk synth` / `cdk deploy` (see cdk.json). Stage and JWT settings come from context."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import stage_config, stages
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
        SlotguardStack(
            app,
            Names(config.stage).stack,
            config=config,
            description=f"slotguard ({config.stage}): booking and webhooks",
        )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))
    return app


if __name__ == "__main__":
    build_app().synth()
