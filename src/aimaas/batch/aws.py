"""AWS batch adapters: files in S3 (KMS), jobs in DynamoDB, chunks on SQS.

Layout
------
- S3 ``<prefix><tenant hash>/<file id>``: a file's bytes, with its metadata as the object's
  user metadata (one request reads both); ``<prefix><tenant hash>/parts/<batch id>/<name>``:
  a chunk's partial results. Every object is written with ``aws:kms`` under the stage's key
  (named explicitly, never left to the bucket default); a lifecycle rule expires them.
- DynamoDB (the storage kit's ``batches`` table): the job ``{pk = TENANT#<tenant>,
  sk = BATCH#<batch id>, ...fields}`` and one marker per counted chunk ``{pk = TENANT#<tenant>,
  sk = CHUNK#<batch id>#<index>}``. A chunk is counted in one transaction that writes its
  marker only if absent and adds its counts to the job, so a redelivered chunk adds nothing.
- SQS: one message per chunk (JSON body) with the tenant as its ``MessageGroupId``: on a
  standard queue that makes it a fair queue (SQS delivers a quiet tenant's messages before
  those of a tenant that holds a disproportionate share of the consumers), with no order and
  no FIFO throughput limit; the redrive policy moves a message that keeps failing to its
  dead-letter queue.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from aimaas import errors
from aimaas.batch.ports import FileStore, JobStore, WorkQueue
from aimaas.batch.records import (
    BatchJob,
    Chunk,
    FileRecord,
    is_batch_id,
    is_file_id,
    is_upload_id,
)
from aimaas.storage.dynamodb import CLIENT_CONFIG, error_code, from_wire, to_wire

_AWS_ERRORS = (ClientError, BotoCoreError)


def _tenant(tenant_id: str) -> str:
    return hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


def _missing(error: ClientError) -> bool:
    return error_code(error) in {"NoSuchKey", "404", "NotFound"}


class S3FileStore(FileStore):
    """Files in one S3 bucket under ``prefix``, KMS-encrypted.

    Parameters
    ----------
    bucket
        The bucket.
    kms_key_id
        The stage's KMS key every object is encrypted with.
    prefix
        Key prefix inside the bucket (a lifecycle rule on it expires batch files).
    s3
        A client (made from the default session when omitted).
    """

    def __init__(
        self, bucket: str, kms_key_id: str, *, prefix: str = "batch/", s3: Any = None
    ) -> None:
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.prefix = prefix
        self.s3 = s3 or boto3.client("s3", config=CLIENT_CONFIG)

    def _key(self, tenant_id: str, file_id: str) -> str | None:
        if not is_file_id(file_id):
            return None
        return f"{self.prefix}{_tenant(tenant_id)}/{file_id}"

    def _part_key(self, tenant_id: str, batch_id: str, name: str) -> str:
        if not (is_batch_id(batch_id) or is_upload_id(batch_id)) or "/" in name:
            raise ValueError(f"bad part name {batch_id!r}/{name!r}")
        return f"{self.prefix}{_tenant(tenant_id)}/parts/{batch_id}/{name}"

    def _put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                Metadata=metadata or {},
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=self.kms_key_id,
            )
        except _AWS_ERRORS as error:
            raise errors.BackendUnavailable("The file store cannot be written.") from error

    def _read(self, operation: str, key: str, **extra: Any) -> dict[str, Any] | None:
        """One S3 read (``get_object``, ``head_object``): its response, None for a missing
        object, 503 for anything else."""
        try:
            return getattr(self.s3, operation)(Bucket=self.bucket, Key=key, **extra)
        except ClientError as error:
            if _missing(error):
                return None
            raise errors.BackendUnavailable("The file store cannot be read.") from error
        except BotoCoreError as error:
            raise errors.BackendUnavailable("The file store cannot be read.") from error

    def _body(self, key: str | None, **extra: Any) -> bytes | None:
        response = None if key is None else self._read("get_object", key, **extra)
        return None if response is None else response["Body"].read()

    def put(self, record: FileRecord, data: bytes) -> None:
        key = self._key(record.tenant_id, record.file_id)
        if key is None:
            raise ValueError(f"not a file id: {record.file_id!r}")
        # User metadata is ASCII only: the record goes as JSON with non-ASCII escaped.
        self._put(key, data, {"record": json.dumps(record.to_row(), ensure_ascii=True)})

    def get(self, tenant_id: str, file_id: str) -> FileRecord | None:
        key = self._key(tenant_id, file_id)
        head = None if key is None else self._read("head_object", key)
        return None if head is None else FileRecord.from_row(json.loads(head["Metadata"]["record"]))

    def content(self, tenant_id: str, file_id: str) -> bytes | None:
        return self._body(self._key(tenant_id, file_id))

    def read_range(self, tenant_id: str, file_id: str, offset: int, length: int) -> bytes | None:
        if length <= 0:
            return b"" if self.get(tenant_id, file_id) else None
        # A ranged GET: a chunk's worker reads its own lines, not the whole file.
        return self._body(
            self._key(tenant_id, file_id), Range=f"bytes={offset}-{offset + length - 1}"
        )

    def put_part(self, tenant_id: str, batch_id: str, name: str, data: bytes) -> None:
        self._put(self._part_key(tenant_id, batch_id, name), data)

    def part(self, tenant_id: str, batch_id: str, name: str) -> bytes | None:
        return self._body(self._part_key(tenant_id, batch_id, name))

    def _encryption(self) -> dict[str, str]:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}

    def presign_upload(
        self, tenant_id: str, upload_id: str, size: int, expires_s: int
    ) -> tuple[str, dict[str, str]] | None:
        # A staging object beside the upload's parts: the bytes become a file only when the
        # upload is completed (adopt_upload), so a half-done PUT is never a file.
        key = self._part_key(tenant_id, upload_id, "content")
        # Signature version 4, which S3 requires of a request naming a KMS key (the client's own
        # default may presign with version 2); the same endpoint and credentials.
        presigner = boto3.client(
            "s3",
            region_name=self.s3.meta.region_name,
            endpoint_url=self.s3.meta.endpoint_url,
            config=CLIENT_CONFIG.merge(Config(signature_version="s3v4")),
        )
        try:
            url = presigner.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": key, **self._encryption()},
                ExpiresIn=expires_s,
            )
        except _AWS_ERRORS as error:
            raise errors.BackendUnavailable("The upload URL cannot be signed.") from error
        # The KMS headers are part of the signature: the client sends them as they are, so the
        # object is under the stage's key like every other, never the bucket default.
        headers = {
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": self.kms_key_id,
        }
        return url, headers

    def adopt_upload(self, record: FileRecord, upload_id: str) -> bool:
        source = self._part_key(record.tenant_id, upload_id, "content")
        head = self._read("head_object", source)
        if head is None or head["ContentLength"] != record.size:
            return False
        key = self._key(record.tenant_id, record.file_id)
        if key is None:
            raise ValueError(f"not a file id: {record.file_id!r}")
        try:  # a copy inside S3 (up to 5 GB in one request): the bytes never pass the function
            self.s3.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": source},
                Metadata={"record": json.dumps(record.to_row(), ensure_ascii=True)},
                MetadataDirective="REPLACE",
                **self._encryption(),
            )
        except _AWS_ERRORS as error:
            raise errors.BackendUnavailable("The file store cannot be written.") from error
        return True


def _job_key(tenant_id: str, batch_id: str) -> dict[str, Any]:
    return to_wire({"pk": f"TENANT#{tenant_id}", "sk": f"BATCH#{batch_id}"})


def _chunk_key(tenant_id: str, batch_id: str, index: int) -> dict[str, str]:
    return {"pk": f"TENANT#{tenant_id}", "sk": f"CHUNK#{batch_id}#{index:08d}"}


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class DynamoDbJobStore(JobStore):
    """Batch jobs in the storage kit's ``batches`` table.

    Parameters
    ----------
    table
        The table name.
    client
        A DynamoDB client (made with the kit's timeouts when omitted).
    """

    def __init__(self, table: str, *, client: Any = None) -> None:
        from aimaas.storage.dynamodb import client as make_client

        self.table = table
        self.dynamodb = make_client(client)

    def _item(self, job: BatchJob) -> dict[str, Any]:
        return to_wire(
            {
                "pk": f"TENANT#{job.tenant_id}",
                "sk": f"BATCH#{job.batch_id}",
                "expires_at_epoch": _epoch(job.expires_at),
                **job.to_item(),
            }
        )

    def create(self, job: BatchJob) -> None:
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item=self._item(job),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except _AWS_ERRORS as error:
            raise errors.BackendUnavailable("The batch could not be stored.") from error

    def get(self, tenant_id: str, batch_id: str) -> BatchJob | None:
        if not is_batch_id(batch_id):
            return None
        try:
            item = self.dynamodb.get_item(
                TableName=self.table, Key=_job_key(tenant_id, batch_id), ConsistentRead=True
            ).get("Item")
        except _AWS_ERRORS as error:
            raise errors.BackendUnavailable("The batch store cannot be read.") from error
        return None if item is None else BatchJob.from_item(from_wire(item))

    def list(self, tenant_id: str, limit: int, after: str | None = None) -> list[BatchJob]:
        values = {":t": f"TENANT#{tenant_id}", ":lo": "BATCH#", ":hi": f"BATCH#{after or '~'}"}
        try:
            page = self.dynamodb.query(
                TableName=self.table,
                # BETWEEN is inclusive: the ``after`` job itself is dropped below.
                KeyConditionExpression="pk = :t AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues=to_wire(values),
                ScanIndexForward=False,  # ids sort by creation time: newest first
                Limit=limit + 1,
                ConsistentRead=True,
            )
        except _AWS_ERRORS as error:
            raise errors.BackendUnavailable("The batch store cannot be read.") from error
        jobs = [BatchJob.from_item(from_wire(i)) for i in page["Items"]]
        return [j for j in jobs if j.batch_id != after][:limit]

    def transition(
        self, tenant_id: str, batch_id: str, allowed: frozenset[str], **changes: Any
    ) -> BatchJob | None:
        current = self.get(tenant_id, batch_id)
        if current is None:
            return None
        fields = current.with_changes(**changes).to_item()
        names = {f"#{n}": n for n in changes if n in fields}
        removed = [n for n in changes if n not in fields]  # set to None
        values = {f":{n}": fields[n] for n in changes if n in fields}
        allowed_values = {f":s{i}": s for i, s in enumerate(sorted(allowed))}
        expression = ""
        if names:
            expression += "SET " + ", ".join(f"#{n} = :{n}" for n in changes if n in fields)
        if removed:
            names.update({f"#{n}": n for n in removed})
            expression += " REMOVE " + ", ".join(f"#{n}" for n in removed)
        names["#status"] = "status"
        try:
            response = self.dynamodb.update_item(
                TableName=self.table,
                Key=_job_key(tenant_id, batch_id),
                UpdateExpression=expression.strip(),
                ConditionExpression=f"#status IN ({', '.join(allowed_values)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_wire({**values, **allowed_values}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return None
            raise errors.BackendUnavailable("The batch could not be updated.") from error
        except BotoCoreError as error:
            raise errors.BackendUnavailable("The batch could not be updated.") from error
        return BatchJob.from_item(from_wire(response["Attributes"]))

    def chunk_counted(self, tenant_id: str, batch_id: str, index: int) -> bool:
        try:
            item = self.dynamodb.get_item(
                TableName=self.table,
                Key=to_wire(_chunk_key(tenant_id, batch_id, index)),
                ConsistentRead=True,
            ).get("Item")
        except _AWS_ERRORS as error:
            raise errors.BackendUnavailable("The batch store cannot be read.") from error
        return item is not None

    def finish_chunk(
        self, tenant_id: str, batch_id: str, index: int, completed: int, failed: int
    ) -> BatchJob | None:
        job = self.get(tenant_id, batch_id)
        if job is None:
            return None
        marker = {
            **_chunk_key(tenant_id, batch_id, index),
            "expires_at_epoch": _epoch(job.expires_at),
        }
        try:
            self.dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": to_wire(marker),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _job_key(tenant_id, batch_id),
                            "UpdateExpression": "ADD completed :c, failed :f, chunks_done :one",
                            "ExpressionAttributeValues": to_wire(
                                {":c": completed, ":f": failed, ":one": 1}
                            ),
                        }
                    },
                ]
            )
        except ClientError as error:
            if error_code(error) == "TransactionCanceledException":
                reasons = error.response.get("CancellationReasons", [])
                if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                    return None  # this chunk was counted before: a redelivery
            raise errors.BackendUnavailable("The batch could not be updated.") from error
        except BotoCoreError as error:
            raise errors.BackendUnavailable("The batch could not be updated.") from error
        return self.get(tenant_id, batch_id)


class SqsWorkQueue(WorkQueue):
    """Chunk messages on an SQS queue (consumed by the worker Lambda's event source mapping,
    or by :meth:`poll` where the worker runs on a host, as in the LocalStack profile).

    Parameters
    ----------
    queue_url
        The queue's URL.
    sqs
        A client (made from the default session when omitted).
    """

    def __init__(self, queue_url: str, *, sqs: Any = None) -> None:
        self.queue_url = queue_url
        self.sqs = sqs or boto3.client("sqs", config=CLIENT_CONFIG)

    def send(self, chunks: list[Chunk]) -> None:
        try:
            for start in range(0, len(chunks), 10):  # SendMessageBatch takes at most 10
                batch = chunks[start : start + 10]
                response = self.sqs.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {
                            "Id": str(n),
                            "MessageBody": json.dumps(c.to_message()),
                            # The tenant, for SQS fair queues: one tenant's backlog does not
                            # hold back the chunks of others (a standard queue keeps no order).
                            "MessageGroupId": c.tenant_id,
                        }
                        for n, c in enumerate(batch)
                    ],
                )
                if response.get("Failed"):
                    raise errors.BackendUnavailable("The batch could not be queued; retry.")
        except _AWS_ERRORS as error:
            raise errors.BackendUnavailable("The batch could not be queued; retry.") from error

    def poll(self, handler: Any, *, wait_s: int = 1, max_messages: int = 10) -> int:
        """Receive up to ``max_messages``, run ``handler`` on each and delete those it handled;
        one that raises stays on the queue (redelivered after its visibility timeout).

        Returns
        -------
        int
            Messages handled.
        """
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_s
        )
        handled = 0
        for message in response.get("Messages", []):
            handler(Chunk.from_message(json.loads(message["Body"])))
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            handled += 1
        return handled
