"""The classifier store port's contract, on both adapters: the local files and AWS (S3 with a
KMS key and DynamoDB, in moto). Tenants never see each other's classifiers; a delete leaves
nothing behind in any of the places the adapter writes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from aimaas import errors
from aimaas.classifiers import (
    ClassifierRecord,
    ClassifierStore,
    Example,
    Head,
    StoredClassifier,
    classifier_id_for,
)
from aimaas.classifiers.aws import AwsClassifierStore, create_table
from aimaas.classifiers.local import LocalClassifierStore

SECRET = "Customer 4411: my card ending 0042 was charged twice"
BUCKET, TABLE = "aimaas-test-classifiers", "aimaas-test-classifiers"


@pytest.fixture
def moto_aws() -> Iterator[dict[str, Any]]:
    from moto import mock_aws

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with mock.patch.dict(os.environ, env), mock_aws():
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            os.environ.pop(name, None)
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        s3.create_bucket(Bucket=BUCKET)
        create_table(dynamodb, TABLE)
        key = boto3.client("kms").create_key(Description="aimaas stage key")["KeyMetadata"]
        yield {"s3": s3, "dynamodb": dynamodb, "key_arn": key["Arn"]}


def _leftovers_local(root: Path) -> Callable[[], list[str]]:
    return lambda: [str(p) for p in root.rglob("*") if p.is_file()]


def _leftovers_aws(aws: dict[str, Any]) -> Callable[[], list[str]]:
    def scan() -> list[str]:
        objects = aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])
        items = aws["dynamodb"].scan(TableName=TABLE)["Items"]
        return [o["Key"] for o in objects] + [str(i) for i in items]

    return scan


@pytest.fixture(params=["local", "aws"])
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ClassifierStore, Callable]:
    if request.param == "local":
        return LocalClassifierStore(tmp_path / "classifiers"), _leftovers_local(tmp_path)
    aws = request.getfixturevalue("moto_aws")
    store = AwsClassifierStore(BUCKET, TABLE, aws["key_arn"])
    return store, _leftovers_aws(aws)


def _classifier(tenant: str, request_id: str) -> StoredClassifier:
    rng = np.random.default_rng(0)
    head = Head(rng.normal(size=8), np.ones(8), rng.normal(size=(8, 2)), np.zeros(2))
    record = ClassifierRecord(
        id=classifier_id_for(tenant, request_id),
        tenant_id=tenant,
        name="cards",
        base_model="all-minilm-l6-v2-int8@1.0.0",
        labels=["billing", "other"],
        examples=2,
        tokens=30,
        cv_accuracy=1.0,
        cv_accuracy_std=0.0,
        cv_folds=2,
        created_at=datetime.now(UTC),
    )
    examples = [Example(text=SECRET, label="billing"), Example(text="hello", label="other")]
    return StoredClassifier(record, head, examples)


def test_the_owner_alone_finds_it_and_delete_leaves_nothing(adapter) -> None:
    store, leftovers = adapter
    mine, theirs = _classifier("t_a", "r1"), _classifier("t_b", "r1")
    store.put(mine)
    store.put(theirs)
    found = store.get("t_a", mine.record.id)
    assert found is not None and found.record == mine.record and found.examples == mine.examples
    x = np.random.default_rng(1).normal(size=(3, 8))
    np.testing.assert_array_equal(found.head.logits(x), mine.head.logits(x))
    assert [r.id for r in store.list("t_a")] == [mine.record.id]
    # Another tenant's id, under my tenant: nothing, however it is asked for.
    assert store.get("t_a", theirs.record.id) is None
    assert store.record("t_a", theirs.record.id) is None
    assert store.delete("t_a", theirs.record.id) is False
    assert store.get("t_b", theirs.record.id) is not None
    assert store.record("t_a", "../../etc/passwd") is None
    assert store.delete("t_a", mine.record.id) is True
    assert store.delete("t_b", theirs.record.id) is True
    assert leftovers() == []
    assert store.get("t_a", mine.record.id) is None and store.list("t_a") == []


def test_aws_objects_are_encrypted_with_the_stage_key(moto_aws) -> None:
    store = AwsClassifierStore(BUCKET, TABLE, moto_aws["key_arn"])
    classifier = _classifier("t_a", "r1")
    store.put(classifier)
    objects = moto_aws["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]
    assert len(objects) == 2
    for listed in objects:
        head = moto_aws["s3"].head_object(Bucket=BUCKET, Key=listed["Key"])
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == moto_aws["key_arn"]
        assert "t_a" not in listed["Key"]  # tenant ids are hashed out of object keys
    # The metadata item holds no example text: that lives only in the encrypted object.
    [item] = moto_aws["dynamodb"].scan(TableName=TABLE)["Items"]
    assert SECRET not in str(item)


def test_aws_failures_are_503_not_500(moto_aws) -> None:
    store = AwsClassifierStore("no-such-bucket", TABLE, moto_aws["key_arn"])
    with pytest.raises(errors.BackendUnavailable):
        store.put(_classifier("t_a", "r1"))
    assert moto_aws["dynamodb"].scan(TableName=TABLE)["Items"] == []  # no metadata without head
    broken = AwsClassifierStore(BUCKET, "no-such-table", moto_aws["key_arn"])
    with pytest.raises(errors.BackendUnavailable):
        broken.list("t_a")
    with pytest.raises(ClientError):  # the test's own check that the table really is absent
        moto_aws["dynamodb"].describe_table(TableName="no-such-table")


def test_the_api_on_the_aws_store_trains_serves_and_deletes(make_app, moto_aws) -> None:
    from tests.functional.classifiers.conftest import TICKETS

    app = make_app(
        classifier_store="aws",  # wired by name, as AIMAAS_CLASSIFIER_STORE=aws does
        classifier_bucket=BUCKET,
        classifiers_table=TABLE,
        kms_key_id=moto_aws["key_arn"],
    )
    assert isinstance(app.container.classifiers, AwsClassifierStore)
    created = app.post("/v1/classifiers", {"name": "t", "examples": TICKETS["train"][:60]})
    assert created.status_code == 201, created.text
    clf = created.json()["id"]
    answer = app.post("/v1/text-classification", {"model": clf, "text": "Refund my invoice?"})
    assert answer.status_code == 200 and answer.json()["label"] in TICKETS["labels"][:3]
    assert app.post(f"/v1/models/{clf}/predict", {"text": "x"}, tenant="b").status_code == 404
    assert app.delete(f"/v1/classifiers/{clf}").status_code == 200
    assert _leftovers_aws(moto_aws)() == []
