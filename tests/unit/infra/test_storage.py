"""The stateful stack: encryption, public access, tables, backups, removal policies per stage."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

PLANS_AND_STAGES = ("plans.toml", "stages.toml")


@pytest.fixture(scope="module")
def dev(synth: Any) -> Any:
    return synth(stage="dev")


@pytest.fixture(scope="module")
def prod(synth: Any) -> Any:
    return synth(stage="prod", gpu_enabled="false")


def test_key_rotates_and_buckets_are_private_encrypted_and_tls_only(dev: Any) -> None:
    storage = dev.template("storage")
    storage.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    buckets = dev.resources("storage", "AWS::S3::Bucket")
    assert len(buckets) == 3  # models, tenants' classifiers, access logs
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
    policies = dev.resources("storage", "AWS::S3::BucketPolicy")
    tls_denies = [
        s
        for p in policies.values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(tls_denies) == 3


def test_model_bucket_is_versioned_kms_and_logged(dev: Any) -> None:
    dev.template("storage").has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    Match.object_like(
                        {
                            "ServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": Match.any_value(),
                            }
                        }
                    )
                ]
            },
            "LoggingConfiguration": Match.object_like({"DestinationBucketName": Match.any_value()}),
        },
    )


@pytest.mark.parametrize(
    ("suffix", "gsi", "ttl"),
    [
        ("tenants", "gsi1", None),
        ("usage", None, "expires_at"),
        ("audit", None, None),
        ("classifiers", None, None),
    ],
)
def test_tables_match_the_runtime_key_schemas(
    dev: Any, suffix: str, gsi: str | None, ttl: str | None
) -> None:
    tables = {
        t["Properties"]["TableName"]: t["Properties"]
        for t in dev.resources("storage", "AWS::DynamoDB::Table").values()
    }
    props = tables[f"aimaas-dev-{suffix}"]
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["SSESpecification"]["SSEType"] == "KMS"
    assert "KMSMasterKeyId" in props["SSESpecification"]
    if ttl:
        assert props["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in props
    indexes = props.get("GlobalSecondaryIndexes", [])
    if gsi:
        assert indexes == [
            {
                "IndexName": gsi,
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ]
    else:
        assert indexes == []


def test_table_schemas_equal_the_storage_kit(dev: Any) -> None:
    """The CDK tables are exactly the storage kit's one definition, which tests (moto) and the
    LocalStack deploy also create: keys, GSIs, TTL and the usage table's stream."""
    import boto3
    from moto import mock_aws

    from aimaas.storage.dynamodb import create_tables
    from aimaas.storage.tables import TABLES

    tables = {
        t["Properties"]["TableName"]: t["Properties"]
        for t in dev.resources("storage", "AWS::DynamoDB::Table").values()
    }
    assert set(tables) == {f"aimaas-dev-{role}" for role in TABLES}
    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        create_tables(client, {role: f"kit-{role}" for role in TABLES})
        for role, schema in TABLES.items():
            props = tables[f"aimaas-dev-{role}"]
            created = client.describe_table(TableName=f"kit-{role}")["Table"]
            assert props["KeySchema"] == schema.key_schema == created["KeySchema"]
            assert (
                sorted(props["AttributeDefinitions"], key=str)
                == sorted(schema.attribute_definitions, key=str)
                == sorted(created["AttributeDefinitions"], key=str)
            )
            assert props.get("GlobalSecondaryIndexes", []) == schema.global_secondary_indexes
            stream = props.get("StreamSpecification", {}).get("StreamViewType")
            assert stream == schema.stream == created.get("StreamSpecification", {}).get(
                "StreamViewType"
            )
            ttl = client.describe_time_to_live(TableName=f"kit-{role}")["TimeToLiveDescription"]
            assert ttl.get("AttributeName") == schema.ttl_attribute
    assert TABLES["usage"].stream == "NEW_IMAGE"  # the aggregator reads it


def test_dev_destroys_and_prod_retains_data(dev: Any, prod: Any) -> None:
    for stage, policy in ((dev, "Delete"), (prod, "Retain")):
        template = stage.json("storage")["Resources"]
        for type_name in ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::KMS::Key"):
            found = [r for r in template.values() if r["Type"] == type_name]
            assert found
            assert {r["DeletionPolicy"] for r in found} == {policy}, type_name
    prod_tables = prod.resources("storage", "AWS::DynamoDB::Table").values()
    assert all(t["Properties"]["DeletionProtectionEnabled"] for t in prod_tables)


def test_backup_plan_and_trail_only_where_the_stage_wants_them(dev: Any, prod: Any) -> None:
    for type_name in ("AWS::Backup::BackupPlan", "AWS::CloudTrail::Trail"):
        assert dev.resources("storage", type_name) == {}
        assert len(prod.resources("storage", type_name)) == 1
    prod.template("storage").has_resource_properties(
        "AWS::CloudTrail::Trail",
        {"EnableLogFileValidation": True, "KMSKeyId": Match.any_value()},
    )
    prod.template("storage").has_resource_properties(
        "AWS::Backup::BackupVault", {"EncryptionKeyArn": Match.any_value()}
    )
    (key,) = prod.resources("storage", "AWS::KMS::Key").values()
    sids = {s.get("Sid") for s in key["Properties"]["KeyPolicy"]["Statement"]}
    assert "AllowCloudTrailToEncryptLogs" in sids  # else CloudTrail refuses the key


def test_core_layer_ships_the_config_files(dev: Any) -> None:
    from infra.assets import ASSETS_DIR

    package = ASSETS_DIR / "aimaas-layer" / "python" / "aimaas"
    assert (package / "__init__.py").is_file()
    assert (package / "config.py").is_file()
    for name in PLANS_AND_STAGES:
        assert (package / "data" / name).is_file()
    assert not list(package.rglob("__pycache__"))


def test_core_layer_holds_only_the_runtime(dev: Any) -> None:
    from infra.assets import ASSETS_DIR

    layer = ASSETS_DIR / "aimaas-layer"
    assert {p.name for p in layer.iterdir()} == {"python"}
    assert {p.name for p in (layer / "python").iterdir()} == {"aimaas"}
    shipped = {p.name for p in (layer / "python" / "aimaas").iterdir()}
    assert {"auth", "metering", "wiring.py", "plans.py"} <= shipped
    for module in (layer / "python" / "aimaas").rglob("*.py"):
        text = module.read_text()
        for tool in ("aimaas_admin", "aimaas_local", "aimaas_testing", "moto", "typer", "jinja2"):
            assert f"import {tool}" not in text and f"from {tool}" not in text, module


def test_classifier_bucket_is_kms_logged_and_unversioned_so_deletes_are_final(dev: Any) -> None:
    buckets = dev.resources("storage", "AWS::S3::Bucket")
    (props,) = (b["Properties"] for k, b in buckets.items() if k.startswith("ClassifierBucket"))
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "KMSMasterKeyID" in rule["ServerSideEncryptionByDefault"]
    assert "VersioningConfiguration" not in props  # no old versions survive a delete
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "classifier-bucket/"
