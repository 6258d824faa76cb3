"""The batch ports' contracts on both adapters: local (folder, SQLite, worker thread) and AWS
(S3 with a KMS key, DynamoDB, SQS with a dead-letter queue, in moto). Tenants never see each
other's files or jobs; a chunk is counted once; transitions are conditional."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from aimaas.batch.aws import DynamoDbJobStore, S3FileStore, SqsWorkQueue
from aimaas.batch.local import FolderFileStore, SqliteJobStore, ThreadWorkQueue
from aimaas.batch.ports import FileStore, JobStore
from aimaas.batch.records import (
    CANCELLING,
    COMPLETED,
    IN_PROGRESS,
    RUNNING,
    BatchJob,
    Chunk,
    FileRecord,
    new_batch_id,
    new_file_id,
)
from aimaas.storage.dynamodb import create_tables
from aimaas_testing.metering import moto_tables

BUCKET, TABLE, QUEUE = "aimaas-test-batch", "aimaas-test-batches", "aimaas-test-batch"


def moto_batch_resources() -> dict[str, str]:
    """The bucket, table, queue (with its DLQ) and KMS key of the AWS batch adapters, inside an
    active moto; returns the ``AIMAAS_*`` settings that point the adapters at them."""
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    env = create_tables(boto3.client("dynamodb"), {"batches": TABLE})
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName=f"{QUEUE}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    redrive = {"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": "3"}
    url = sqs.create_queue(
        QueueName=QUEUE,
        Attributes={"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": "1"},
    )["QueueUrl"]
    key = boto3.client("kms").create_key(Description="aimaas stage key")["KeyMetadata"]["Arn"]
    return {
        **env,
        "AIMAAS_BATCH_FILE_STORE": "s3",
        "AIMAAS_BATCH_JOB_STORE": "dynamodb",
        "AIMAAS_BATCH_QUEUE": "sqs",
        "AIMAAS_BATCH_BUCKET": BUCKET,
        "AIMAAS_BATCH_QUEUE_URL": url,
        "AIMAAS_KMS_KEY_ID": key,
    }


@pytest.fixture
def aws() -> Iterator[dict[str, str]]:
    with moto_tables(aggregate=False) as env:
        yield {**env, **moto_batch_resources()}


@pytest.fixture(params=["local", "aws"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FileStore, JobStore]]:
    if request.param == "local":
        jobs = SqliteJobStore(tmp_path / "db.sqlite")
        yield FolderFileStore(tmp_path / "files"), jobs
        jobs.close()
        return
    with moto_tables(aggregate=False):
        env = moto_batch_resources()
        yield S3FileStore(BUCKET, env["AIMAAS_KMS_KEY_ID"]), DynamoDbJobStore(TABLE)


def _file(tenant: str, data: bytes) -> FileRecord:
    return FileRecord(new_file_id(), tenant, "in.jsonl", "batch", len(data), datetime.now(UTC))


def _job(tenant: str, batch_id: str | None = None, chunks: int = 2) -> BatchJob:
    now = datetime.now(UTC)
    return BatchJob(
        batch_id=batch_id or new_batch_id(),
        tenant_id=tenant,
        key_id="k",
        plan="pro",
        input_file_id=new_file_id(),
        endpoint="/v1/embeddings",
        completion_window="24h",
        status=IN_PROGRESS,
        created_at=now,
        expires_at=now + timedelta(days=30),
        chunks=chunks,
        total=10,
        metadata={"project": "ünïcode"},
    )


def test_files_are_found_only_under_their_tenant(stores: tuple[FileStore, JobStore]) -> None:
    files, _ = stores
    data = '{"custom_id": "é"}\n'.encode()
    record = _file("t_a", data)
    files.put(record, data)
    assert files.get("t_a", record.file_id) == record
    assert files.content("t_a", record.file_id) == data
    assert files.get("t_b", record.file_id) is None
    assert files.content("t_b", record.file_id) is None
    assert files.get("t_a", "../" + record.file_id) is None
    assert files.read_range("t_a", record.file_id, 2, 10) == data[2:12]
    assert files.read_range("t_a", record.file_id, 0, 0) == b""
    assert files.read_range("t_b", record.file_id, 2, 10) is None
    batch_id = new_batch_id()
    files.put_part("t_a", batch_id, "00000000.out", b"x\n")
    assert files.part("t_a", batch_id, "00000000.out") == b"x\n"
    assert files.part("t_b", batch_id, "00000000.out") is None
    assert files.part("t_a", batch_id, "00000001.out") is None


def test_jobs_list_newest_first_per_tenant_and_page(stores: tuple[FileStore, JobStore]) -> None:
    _, jobs = stores
    made = []
    for n in range(5):
        job = _job("t_a", f"batch_{n:012x}{'0' * 12}")
        jobs.create(job)
        made.append(job)
    jobs.create(_job("t_b"))
    assert jobs.get("t_a", made[0].batch_id) == made[0]
    assert jobs.get("t_b", made[0].batch_id) is None
    listed = jobs.list("t_a", 3)
    assert [j.batch_id for j in listed] == [j.batch_id for j in made[::-1][:3]]
    rest = jobs.list("t_a", 10, after=listed[-1].batch_id)
    assert [j.batch_id for j in rest] == [made[1].batch_id, made[0].batch_id]
    assert len(jobs.list("t_b", 10)) == 1


def test_transitions_are_conditional_and_chunks_count_once(
    stores: tuple[FileStore, JobStore],
) -> None:
    _, jobs = stores
    job = _job("t_a")
    jobs.create(job)
    now = datetime.now(UTC)
    cancelling = jobs.transition("t_a", job.batch_id, RUNNING, status=CANCELLING, cancelling_at=now)
    assert cancelling is not None and cancelling.status == CANCELLING
    assert jobs.transition("t_a", job.batch_id, RUNNING, status=COMPLETED) is None
    assert jobs.transition("t_b", job.batch_id, frozenset({CANCELLING}), status=COMPLETED) is None
    assert not jobs.chunk_counted("t_a", job.batch_id, 0)
    first = jobs.finish_chunk("t_a", job.batch_id, 0, 4, 1)
    assert jobs.chunk_counted("t_a", job.batch_id, 0)
    assert not jobs.chunk_counted("t_b", job.batch_id, 0)
    assert first is not None and (first.completed, first.failed, first.chunks_done) == (4, 1, 1)
    assert jobs.finish_chunk("t_a", job.batch_id, 0, 4, 1) is None  # redelivered
    second = jobs.finish_chunk("t_a", job.batch_id, 1, 5, 0)
    assert second is not None and (second.completed, second.failed, second.chunks_done) == (9, 1, 2)
    ended = jobs.transition(
        "t_a", job.batch_id, frozenset({CANCELLING}), status=COMPLETED, error_file_id=None
    )
    assert ended is not None and ended.status == COMPLETED and ended.metadata == job.metadata
    assert jobs.get("t_a", job.batch_id) == ended


def test_an_expiry_mark_keeps_the_status_and_reads_back(stores: tuple[FileStore, JobStore]) -> None:
    _, jobs = stores
    job = _job("t_a")
    jobs.create(job)
    now = datetime.now(UTC).replace(microsecond=0)
    marked = jobs.transition("t_a", job.batch_id, RUNNING, expired_at=now)
    assert marked is not None and marked.status == job.status and marked.expired_at == now
    assert jobs.get("t_a", job.batch_id) == marked
    assert job.deadline == job.created_at + timedelta(hours=24)


def test_an_older_sqlite_job_table_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    old_columns = ", ".join(f"{c} TEXT" for c in BatchJob.columns() if c != "expired_at")
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE batch_jobs ({old_columns}, PRIMARY KEY (tenant_id, batch_id))")
    jobs = SqliteJobStore(path)
    try:
        job = _job("t_a")
        jobs.create(job)
        assert jobs.get("t_a", job.batch_id) == job
    finally:
        jobs.close()


def test_s3_objects_are_encrypted_with_the_stage_key(aws: dict[str, str]) -> None:
    files = S3FileStore(BUCKET, aws["AIMAAS_KMS_KEY_ID"])
    record = _file("t_a", b"{}\n")
    files.put(record, b"{}\n")
    files.put_part("t_a", new_batch_id(), "00000000.out", b"x\n")
    s3 = boto3.client("s3")
    for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]:
        head = s3.head_object(Bucket=BUCKET, Key=item["Key"])
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == aws["AIMAAS_KMS_KEY_ID"]
        assert "t_a" not in item["Key"]  # tenant ids are hashed out of keys


def test_sqs_delivers_every_chunk_and_keeps_a_failed_one(aws: dict[str, str]) -> None:
    queue = SqsWorkQueue(aws["AIMAAS_BATCH_QUEUE_URL"])
    chunks = [Chunk("t_a", new_batch_id(), n, n * 10, n * 10 + 10) for n in range(23)]
    queue.send(chunks)
    seen: list[Chunk] = []
    while queue.poll(seen.append, wait_s=0):
        pass
    assert sorted(seen, key=lambda c: c.index) == chunks

    queue.send(chunks[:1])

    def fail(_: Chunk) -> None:
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        queue.poll(fail, wait_s=0)
    import time

    time.sleep(1.1)  # the visibility timeout: the message comes back
    again: list[Any] = []
    queue.poll(again.append, wait_s=0)
    assert again == chunks[:1]


def test_the_thread_queue_retries_then_gives_up() -> None:
    queue = ThreadWorkQueue(max_attempts=3)
    tries: list[int] = []

    def flaky(chunk: Chunk) -> None:
        tries.append(chunk.index)
        raise RuntimeError("boom")

    queue.start(flaky)
    chunk = Chunk("t_a", new_batch_id(), 7, 0, 1)
    queue.send([chunk])
    queue.join()
    queue.close()
    assert tries == [7, 7, 7] and queue.dead == [chunk]


def test_the_thread_queue_takes_tenants_in_turn_and_caps_each() -> None:
    import threading

    order: list[str] = []
    queue = ThreadWorkQueue(workers=1)
    a, b = new_batch_id(), new_batch_id()
    queue.send([Chunk("t_a", a, n, n, n + 1) for n in range(4)])
    queue.send([Chunk("t_b", b, n, n, n + 1) for n in range(2)])
    queue.start(lambda chunk: order.append(f"{chunk.tenant_id[-1]}{chunk.index}"))
    queue.join()
    queue.close()
    assert order == ["a0", "b0", "a1", "b1", "a2", "a3"]

    # Two threads, at most one chunk of a tenant at a time: a's chunks never overlap.
    capped = ThreadWorkQueue(workers=2, per_tenant=1)
    lock, running, most = threading.Lock(), [0], [0]

    def slow(chunk: Chunk) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threading.Event().wait(0.02)
        with lock:
            running[0] -= 1

    capped.send([Chunk("t_a", a, n, n, n + 1) for n in range(6)])
    capped.start(slow)
    capped.join()
    capped.close()
    assert most == [1]
