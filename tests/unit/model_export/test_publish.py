"""Publishing to S3 under moto: versioned bucket, SSE-KMS, sha256 checks, manifest last."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aimaas.manifest import ModelManifest
from model_export.base import BuildContext
from model_export.publish import PublishError, publish_registry
from model_export.registry import build_one

REGION = "eu-west-1"


@pytest.fixture
def registry(tmp_path: Path, tiny: type) -> Path:
    root = tmp_path / "registry"
    assert build_one(tiny(), root, BuildContext(cache_dir=tmp_path)).status == "built"
    return root


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        key_id = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["KeyId"]
        for bucket in ("models", "unversioned"):
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        s3.put_bucket_versioning(Bucket="models", VersioningConfiguration={"Status": "Enabled"})
        yield {"s3": s3, "key_id": key_id}


def test_publish_encrypts_and_reads_back(registry: Path, aws: dict[str, Any]) -> None:
    s3 = aws["s3"]
    keys = publish_registry(registry, s3, "models", prefix="models", kms_key_id=aws["key_id"])
    assert keys == [
        "models/tiny-model/1.0.0/model.onnx",
        "models/tiny-model/1.0.0/labels.txt",
        "models/tiny-model/1.0.0/manifest.json",
    ]
    for key in keys:
        head = s3.head_object(Bucket="models", Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert aws["key_id"] in head["SSEKMSKeyId"]
    body = s3.get_object(Bucket="models", Key=keys[-1])["Body"].read()
    manifest = ModelManifest.model_validate_json(body)
    onnx_head = s3.head_object(Bucket="models", Key=keys[0])
    assert onnx_head["Metadata"]["sha256"] == manifest.artifact.sha256
    assert onnx_head["ContentLength"] == manifest.artifact.size_bytes


def test_unversioned_bucket_is_refused(registry: Path, aws: dict[str, Any]) -> None:
    with pytest.raises(PublishError, match="not versioned"):
        publish_registry(registry, aws["s3"], "unversioned")
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket="unversioned")


def test_tampered_file_is_not_uploaded(registry: Path, aws: dict[str, Any]) -> None:
    (registry / "tiny-model" / "1.0.0" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match"):
        publish_registry(registry, aws["s3"], "models")
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket="models")


def test_empty_registry_is_refused(tmp_path: Path, aws: dict[str, Any]) -> None:
    with pytest.raises(PublishError, match="no manifests"):
        publish_registry(tmp_path, aws["s3"], "models")


def test_staging_leftovers_are_not_registry_entries(registry: Path) -> None:
    from model_export.publish import registry_entries

    (entry,) = registry_entries(registry)
    # What an interrupted build leaves: a manifest in the builder's scratch folder.
    leftover = registry / ".staging" / "tiny-abc123"
    leftover.mkdir(parents=True)
    (leftover / "manifest.json").write_text((entry / "manifest.json").read_text())
    assert registry_entries(registry) == [entry]
