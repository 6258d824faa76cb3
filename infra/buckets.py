"""Buckets every stack with S3 data needs alike."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

#: How long S3 server access logs are kept.
ACCESS_LOG_DAYS = 90


def access_log_bucket(
    scope: Construct, construct_id: str, *, removal: cdk.RemovalPolicy, auto_delete: bool
) -> s3.Bucket:
    """A private bucket that receives S3 server access logs for ``scope``'s data buckets.

    Parameters
    ----------
    scope, construct_id
        Where the bucket is defined.
    removal
        The stage's removal policy.
    auto_delete
        Whether the bucket is emptied when the stack is deleted (disposable stages only).
    """
    return s3.Bucket(
        scope,
        construct_id,
        # S3 server access logging can only deliver into an SSE-S3 bucket.
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        versioned=False,
        lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(ACCESS_LOG_DAYS))],
        removal_policy=removal,
        auto_delete_objects=auto_delete,
    )
