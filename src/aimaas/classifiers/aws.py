"""The AWS classifier store: heads and examples in S3 under the stage's KMS key, metadata in
DynamoDB.

Layout
------
- DynamoDB item ``{pk = TENANT#<tenant id>, sk = CLASSIFIER#<id>, record}`` (the record's
  JSON; the ``pk``/``sk`` layout of every aimaas table). The item is the classifier's
  existence: it is written after the S3 objects and deleted after them, so a reader never finds
  metadata whose head is missing for good, and a delete that fails half-way leaves an item that
  a retried delete removes.
- S3 objects ``<prefix><tenant hash>/<id>/head.npz`` and ``.../examples.json``, each written
  with ``aws:kms`` server-side encryption under the stage's key (named explicitly: the bucket's
  default encryption is not relied upon). The bucket is unversioned, so a delete really deletes.

Every read is keyed by the caller's tenant: another tenant's id is simply not found.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from aimaas import errors
from aimaas.classifiers.records import (
    ClassifierRecord,
    Example,
    Head,
    StoredClassifier,
    is_classifier_id,
)
from aimaas.classifiers.store import ClassifierStore

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5
)
HEAD, EXAMPLES = "head.npz", "examples.json"


class AwsClassifierStore(ClassifierStore):
    """Classifiers in S3 (KMS-encrypted) with DynamoDB metadata.

    Parameters
    ----------
    bucket
        The classifier bucket.
    table
        The classifiers table (hash key ``pk``, range key ``sk``, both strings).
    kms_key_id
        The stage's KMS key (id, ARN or alias) every object is encrypted with.
    prefix
        Key prefix inside the bucket.
    s3, dynamodb
        Clients (made from the default session when omitted).
    """

    def __init__(
        self,
        bucket: str,
        table: str,
        kms_key_id: str,
        *,
        prefix: str = "classifiers/",
        s3: Any = None,
        dynamodb: Any = None,
    ) -> None:
        self.bucket = bucket
        self.table = table
        self.kms_key_id = kms_key_id
        self.prefix = prefix
        self.s3 = s3 or boto3.client("s3", config=_CLIENT_CONFIG)
        self.dynamodb = dynamodb or boto3.client("dynamodb", config=_CLIENT_CONFIG)

    def _key(self, tenant_id: str, classifier_id: str, name: str) -> str:
        tenant = hashlib.sha256(tenant_id.encode()).hexdigest()[:32]
        return f"{self.prefix}{tenant}/{classifier_id}/{name}"

    @staticmethod
    def _item_key(tenant_id: str, classifier_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"TENANT#{tenant_id}"}, "sk": {"S": f"CLASSIFIER#{classifier_id}"}}

    def put(self, classifier: StoredClassifier) -> None:
        record = classifier.record
        if not is_classifier_id(record.id):
            raise ValueError(f"not a classifier id: {record.id!r}")
        examples = json.dumps([e.model_dump() for e in classifier.examples]).encode()
        try:
            for name, body in ((HEAD, classifier.head.to_bytes()), (EXAMPLES, examples)):
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self._key(record.tenant_id, record.id, name),
                    Body=body,
                    ServerSideEncryption="aws:kms",
                    SSEKMSKeyId=self.kms_key_id,
                )
            self.dynamodb.put_item(
                TableName=self.table,
                Item={
                    **self._item_key(record.tenant_id, record.id),
                    "record": {"S": record.model_dump_json()},
                },
            )
        except (ClientError, BotoCoreError) as error:
            raise errors.BackendUnavailable("The classifier store cannot be written.") from error

    def record(self, tenant_id: str, classifier_id: str) -> ClassifierRecord | None:
        if not is_classifier_id(classifier_id):
            return None
        try:
            item = self.dynamodb.get_item(
                TableName=self.table,
                Key=self._item_key(tenant_id, classifier_id),
                ConsistentRead=True,  # a classifier is usable the moment its create returns
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise errors.BackendUnavailable("The classifier store cannot be read.") from error
        return None if item is None else ClassifierRecord.model_validate_json(item["record"]["S"])

    def _read(self, tenant_id: str, classifier_id: str, name: str) -> bytes | None:
        try:
            response = self.s3.get_object(
                Bucket=self.bucket, Key=self._key(tenant_id, classifier_id, name)
            )
            return response["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None  # deleted since its metadata was read
            raise errors.BackendUnavailable("The classifier store cannot be read.") from error
        except BotoCoreError as error:
            raise errors.BackendUnavailable("The classifier store cannot be read.") from error

    def get(self, tenant_id: str, classifier_id: str) -> StoredClassifier | None:
        record = self.record(tenant_id, classifier_id)
        if record is None:
            return None
        head = self._read(tenant_id, classifier_id, HEAD)
        examples = self._read(tenant_id, classifier_id, EXAMPLES)
        if head is None or examples is None:
            return None
        return StoredClassifier(
            record, Head.from_bytes(head), [Example(**e) for e in json.loads(examples)]
        )

    def list(self, tenant_id: str) -> list[ClassifierRecord]:
        records: list[ClassifierRecord] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :t AND begins_with(sk, :c)",
            "ExpressionAttributeValues": {
                ":t": {"S": f"TENANT#{tenant_id}"},
                ":c": {"S": "CLASSIFIER#"},
            },
            "ConsistentRead": True,
        }
        try:
            while True:
                page = self.dynamodb.query(**kwargs)
                records += [
                    ClassifierRecord.model_validate_json(i["record"]["S"]) for i in page["Items"]
                ]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as error:
            raise errors.BackendUnavailable("The classifier store cannot be read.") from error
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def delete(self, tenant_id: str, classifier_id: str) -> bool:
        if self.record(tenant_id, classifier_id) is None:
            return False
        try:
            self.s3.delete_objects(
                Bucket=self.bucket,
                Delete={
                    "Objects": [
                        {"Key": self._key(tenant_id, classifier_id, n)} for n in (HEAD, EXAMPLES)
                    ],
                    "Quiet": True,
                },
            )
            self.dynamodb.delete_item(
                TableName=self.table, Key=self._item_key(tenant_id, classifier_id)
            )
        except (ClientError, BotoCoreError) as error:
            raise errors.BackendUnavailable("The classifier could not be deleted.") from error
        return True


def create_table(client: Any, name: str) -> None:
    """Create the classifiers table (tests and LocalStack; AWS gets it from CDK, built from the
    same :data:`aimaas.storage.CLASSIFIERS`)."""
    from aimaas.storage.dynamodb import create_tables

    create_tables(client, {"classifiers": name})
