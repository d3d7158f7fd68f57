"""cdk-nag (v3, CDK Validations) acknowledgements: each with the reason it is acceptable.
Findings that carry a detail (IAM5 wildcards) are acknowledged one by one, as
`AwsSolutions-IAM5[Resource::...]`."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def suppress(construct: IConstruct, rules: Sequence[tuple[str, str]]) -> None:
    validations = Validations.of(construct)
    for rule, reason in rules:
        validations.acknowledge(Acknowledgment(id=rule, reason=reason))
