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
#: Where the runtime's AWS classifier store writes (``AwsClassifierStore``'s default prefix).
CLASSIFIER_PREFIX = "classifiers/"
#: Where the runtime's S3 batch file store writes (``S3FileStore``'s default prefix), in the
#: same tenant-data bucket as classifiers; a lifecycle rule expires it.
BATCH_PREFIX = "batch/"
#: Days batch files are kept: ``aimaas.batch.jobs.RETENTION`` (a test keeps the two equal;
#: infra imports no runtime module that pulls in FastAPI).
BATCH_RETENTION_DAYS = 30


def model_bucket_arn(settings: InfraSettings, stack: cdk.Stack) -> str:
    """The model bucket ARN, from ``stack``'s own pseudo parameters (no cross-stack export)."""
    return f"arn:{stack.partition}:s3:::{settings.prefix}-models-{stack.account}-{stack.region}"


def model_objects_finding(settings: InfraSettings) -> str:
    """The cdk-nag IAM5 finding id for the ``models/*`` object resource, as cdk-nag renders it."""
    bucket = f"arn:<AWS::Partition>:s3:::{settings.prefix}-models-<AWS::AccountId>-<AWS::Region>"
    return f"AwsSolutions-IAM5[Resource::{bucket}/{MODEL_PREFIX}*]"


def classifier_bucket_name(settings: InfraSettings, stack: cdk.Stack) -> str:
    """The tenants' classifier bucket, named like the model bucket from ``stack``'s own account
    and region (no cross-stack export)."""
    return f"{settings.prefix}-classifiers-{stack.account}-{stack.region}"


def classifier_objects_finding(settings: InfraSettings) -> str:
    """The cdk-nag IAM5 finding id for the ``classifiers/*`` object resource."""
    bucket = (
        f"arn:<AWS::Partition>:s3:::{settings.prefix}-classifiers-<AWS::AccountId>-<AWS::Region>"
    )
    return f"AwsSolutions-IAM5[Resource::{bucket}/{CLASSIFIER_PREFIX}*]"


def batch_objects_finding(settings: InfraSettings) -> str:
    """The cdk-nag IAM5 finding id for the ``batch/*`` object resource."""
    return classifier_objects_finding(settings).replace(CLASSIFIER_PREFIX, BATCH_PREFIX)


def _grant_tenant_objects(
    grantee: iam.IGrantable,
    settings: InfraSettings,
    stack: cdk.Stack,
    prefix: str,
    actions: list[str],
) -> None:
    # s3:ListBucket on the prefix makes a missing object a 404 (not a 403) for the store.
    bucket = f"arn:{stack.partition}:s3:::{classifier_bucket_name(settings, stack)}"
    for statement in (
        iam.PolicyStatement(actions=actions, resources=[f"{bucket}/{prefix}*"]),
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        ),
    ):
        grantee.grant_principal.add_to_principal_policy(statement)


def grant_classifier_objects(
    grantee: iam.IGrantable, settings: InfraSettings, stack: cdk.Stack
) -> None:
    """Read, write and delete the objects under ``classifiers/`` of the classifier bucket.

    No version actions are granted: the bucket is unversioned, so a delete is final. KMS use of
    the stage's key is granted with the tables' (the same key).
    """
    _grant_tenant_objects(
        grantee,
        settings,
        stack,
        CLASSIFIER_PREFIX,
        ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
    )


def grant_batch_objects(grantee: iam.IGrantable, settings: InfraSettings, stack: cdk.Stack) -> None:
    """Read and write the objects under ``batch/`` (batch inputs, partial results, outputs).

    No delete: batch files end by the bucket's lifecycle rule, not by the functions.
    """
    _grant_tenant_objects(grantee, settings, stack, BATCH_PREFIX, ["s3:GetObject", "s3:PutObject"])


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
