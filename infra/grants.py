"""Least-privilege grants written out by hand, with readable resource ARNs.

CDK's ``grant_read`` helpers add suffix-wildcard actions (``s3:GetObject*``, ``s3:List*``,
``kms:GenerateDataKey*``) and token-named resources; these statements name exact actions and
ARNs built from the stage's deterministic resource names, so cdk-nag findings are few, stable and
acknowledged one by one.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from infra.settings import InfraSettings

MODEL_PREFIX = "models/"


def model_bucket_arn(settings: InfraSettings, stack: cdk.Stack) -> str:
    """The model bucket ARN, from ``stack``'s own pseudo parameters (no cross-stack export)."""
    return f"arn:{stack.partition}:s3:::{settings.prefix}-models-{stack.account}-{stack.region}"


def model_objects_finding(settings: InfraSettings) -> str:
    """The cdk-nag IAM5 finding id for the ``models/*`` object resource, as cdk-nag renders it."""
    bucket = f"arn:<AWS::Partition>:s3:::{settings.prefix}-models-<AWS::AccountId>-<AWS::Region>"
    return f"AwsSolutions-IAM5[Resource::{bucket}/{MODEL_PREFIX}*]"


def grant_model_read(
    grantee: iam.IGrantable, settings: InfraSettings, stack: cdk.Stack, key: kms.IKey
) -> None:
    """Read the objects under ``models/`` of the stage's model bucket (and decrypt them).

    Parameters
    ----------
    grantee
        The role or function.
    settings
        Names the stage's bucket.
    stack
        The stack whose pseudo parameters build the ARN (the grantee's).
    key
        The bucket's KMS key.
    """
    bucket = model_bucket_arn(settings, stack)
    for statement in (
        iam.PolicyStatement(
            actions=["s3:GetObject", "s3:GetObjectVersion"],
            resources=[f"{bucket}/{MODEL_PREFIX}*"],
        ),
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket],
            conditions={"StringLike": {"s3:prefix": [f"{MODEL_PREFIX}*"]}},
        ),
        iam.PolicyStatement(actions=["kms:Decrypt", "kms:DescribeKey"], resources=[key.key_arn]),
    ):
        grantee.grant_principal.add_to_principal_policy(statement)
