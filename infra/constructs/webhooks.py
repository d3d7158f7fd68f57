"""Webhooks: the SQS queue and its dead-letter queue (encrypted, TLS only), the redrive policy,
and the event source mappings of the processor and the dead-letter reconciler."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.nag import suppress
from infra.names import Names
from slotguard.topology import WEBHOOK_QUEUE


class WebhookQueues(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, names: Names) -> None:
        super().__init__(scope, construct_id)
        # A message's expiry counts from its first enqueue, also in the DLQ: the DLQ keeps longer.
        self.dlq = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(WEBHOOK_QUEUE.dlq_retention_days),
            visibility_timeout=Duration.seconds(6 * WEBHOOK_QUEUE.reconciler_timeout_s),
            removal_policy=config.removal_policy,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(WEBHOOK_QUEUE.retention_days),
            visibility_timeout=Duration.seconds(WEBHOOK_QUEUE.visibility_timeout_s),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dlq, max_receive_count=WEBHOOK_QUEUE.max_receive_count
            ),
            removal_policy=config.removal_policy,
        )
        suppress(
            self.dlq,
            [
                (
                    "AwsSolutions-SQS3",
                    "This queue is the dead-letter queue of the webhook queue; "
                    "its messages are drained by the dead-letter reconciler.",
                )
            ],
        )

    def attach_processor(self, processor: lambda_.Function) -> sources.SqsEventSource:
        source = sources.SqsEventSource(
            self.queue,
            batch_size=WEBHOOK_QUEUE.batch_size,
            max_batching_window=Duration.seconds(WEBHOOK_QUEUE.batching_window_s),
            report_batch_item_failures=True,
            max_concurrency=WEBHOOK_QUEUE.maximum_concurrency,
        )
        processor.add_event_source(source)
        return source

    def attach_reconciler(self, reconciler: lambda_.Function) -> None:
        reconciler.add_event_source(
            sources.SqsEventSource(
                self.dlq,
                batch_size=10,
                report_batch_item_failures=True,
                max_concurrency=WEBHOOK_QUEUE.reconciler_maximum_concurrency,
            )
        )
