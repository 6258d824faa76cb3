"""cdk-nag wiring: the AwsSolutions pack, and per-resource acknowledgements with reasons.

cdk-nag 3.x reports through CDK's policy-validation plugins (``Validations.of(app)``); a finding
that is accepted by design is acknowledged on the resource it concerns, always with its reason.
There is deliberately no stack-wide or app-wide acknowledgement helper.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def acknowledge(construct: IConstruct, reasons: Mapping[str, str]) -> None:
    """Accept specific cdk-nag rules on one resource (and its children), each with a reason.

    Parameters
    ----------
    construct
        The resource (L2 or L1) the findings are about.
    reasons
        ``{rule id: why it is acceptable here}``, e.g. ``{"AwsSolutions-S1": "..."}``.
    """
    if isinstance(construct, cdk.Stack):
        raise ValueError("acknowledge findings per resource, not per stack")
    for rule_id, reason in reasons.items():
        if len(reason) < 10:
            raise ValueError(f"{rule_id}: give a real reason, not {reason!r}")
    cdk.Validations.of(construct).acknowledge(
        *(
            cdk.Acknowledgment(id=_qualified(rule_id), reason=reason)
            for rule_id, reason in reasons.items()
        )
    )


def _qualified(rule_id: str) -> str:
    # Granular findings (``AwsSolutions-IAM5[Action::s3:GetObject*]``) are acknowledged under
    # the plugin-qualified id cdk-nag prints: ``AwsSolutions::AwsSolutions-IAM5[...]``.
    if "[" in rule_id and "::" not in rule_id.split("[", 1)[0]:
        return f"{rule_id.split('-', 1)[0]}::{rule_id}"
    return rule_id


def add_nag_checks(app: cdk.App) -> None:
    """Run the AwsSolutions pack at ``app.synth()``; findings fail the synthesis."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(verbose=True))
