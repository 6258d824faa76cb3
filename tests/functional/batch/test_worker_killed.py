"""Fault injection: a batch worker process killed with SIGKILL in the middle of a chunk.

The engine is the AWS one on a moto server (S3 for files, DynamoDB for jobs, SQS for chunks,
with a short visibility timeout) and the SQLite ledger shared by the processes. A worker
(``python -m aimaas_local batch-worker``, a real process) is killed once it has billed some
lines of a chunk it has not counted; SQS redelivers the chunk to a second worker process. The
batch must end with exactly one output line per input line and one ledger record per line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from aimaas.api.container import Container, build_container
from aimaas.auth import Principal
from aimaas.batch.jobs import create_batch
from aimaas.batch.records import FileRecord, line_request_id, new_file_id
from aimaas.config import Settings
from aimaas.storage import now_utc
from aimaas.storage.dynamodb import create_tables
from aimaas_testing.paths import REGISTRY, has_model
from aimaas_testing.servers import free_port
from tests.functional.pressure.support import provision

ROOT = Path(__file__).parents[3]
CHUNK_LINES = 40
LINES = 3 * CHUNK_LINES


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A moto server with the bucket, table, queue and key; the workers' environment."""
    if not has_model("all-minilm-l6-v2-int8"):
        pytest.skip(f"no model registry at {REGISTRY}; run `make models`")
    from moto.server import ThreadedMotoServer

    port = free_port()
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto's backends are per process, not per server: start from none (another test's tables).
    httpx.post(f"{aws['AWS_ENDPOINT_URL']}/moto-api/reset").raise_for_status()
    try:
        boto3.client("s3").create_bucket(Bucket="batch")
        tables = create_tables(boto3.client("dynamodb"), {"batches": "batches"})
        queue = boto3.client("sqs").create_queue(
            QueueName="chunks", Attributes={"VisibilityTimeout": "3"}
        )["QueueUrl"]
        key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
        db = tmp_path / "aimaas.db"
        yield {
            **aws,
            **tables,
            "AIMAAS_REGISTRY": str(REGISTRY),
            "AIMAAS_KEY_STORE": "sqlite",
            "AIMAAS_LEDGER": "sqlite",
            "AIMAAS_SQLITE_PATH": str(db),
            "AIMAAS_ONNX_THREADS": "1",
            "AIMAAS_BATCH_FILE_STORE": "s3",
            "AIMAAS_BATCH_JOB_STORE": "dynamodb",
            "AIMAAS_BATCH_QUEUE": "sqs",
            "AIMAAS_BATCH_BUCKET": "batch",
            "AIMAAS_BATCH_QUEUE_URL": queue,
            "AIMAAS_KMS_KEY_ID": key,
            "AIMAAS_BATCH_CHUNK_LINES": str(CHUNK_LINES),
        }
    finally:
        server.stop()


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aimaas_local", "batch-worker", "--wait-s", "1"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _billed(container: Container, tenant: str, batch_id: str) -> list[Any]:
    now = datetime.now(UTC)
    records = container.ledger.records(tenant, now - timedelta(days=1), now + timedelta(days=1))
    return [r for r in records if r.request_id.startswith(batch_id)]


def _lines() -> bytes:
    made = []
    for n in range(LINES):
        url, body = (
            ("/v1/embeddings", {"input": f"line {n} of the batch"})
            if n % 2
            else ("/v1/text-classification", {"text": f"The match {n} ended in a draw."})
        )
        made.append({"custom_id": f"req-{n}", "method": "POST", "url": url, "body": body})
    return b"".join(json.dumps(x).encode() + b"\n" for x in made)


def test_a_worker_killed_mid_chunk_leaves_one_output_line_and_one_bill_per_line(
    engine: dict[str, str], tmp_path: Path
) -> None:
    creds = provision(Path(engine["AIMAAS_SQLITE_PATH"]), {"a": "pro"})["a"]
    container = build_container(Settings.from_env(engine))
    try:
        assert container.batch is not None
        files, jobs = container.batch.files, container.batch.jobs
        tenant = creds.tenant_id
        record = FileRecord(new_file_id(), tenant, "in.jsonl", "batch", 0, now_utc())
        files.put(record, _lines())
        principal = Principal(tenant_id=tenant, key_id=creds.key_id, plan="pro")
        job = create_batch(container, principal, record.file_id, "/v1/embeddings")
        assert job.chunks == 3

        first = _worker(engine, tmp_path / "worker-1.log")
        try:
            end = time.monotonic() + 120
            while time.monotonic() < end:  # until it has billed lines of an uncounted chunk
                counted = jobs.get(tenant, job.batch_id)
                assert counted is not None and counted.status == "in_progress"
                if len(_billed(container, tenant, job.batch_id)) >= counted.completed + 3:
                    break
                time.sleep(0.01)
            else:
                raise AssertionError((tmp_path / "worker-1.log").read_text())
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            first.kill()
        assert first.returncode == -signal.SIGKILL
        at_kill = jobs.get(tenant, job.batch_id)
        billed_at_kill = len(_billed(container, tenant, job.batch_id))
        assert at_kill is not None and at_kill.status == "in_progress"
        # Killed mid-chunk: lines billed beyond those of the chunks it counted, not all of them.
        assert at_kill.completed + at_kill.failed < billed_at_kill < LINES, (
            at_kill,
            billed_at_kill,
        )

        second = _worker(engine, tmp_path / "worker-2.log")  # the chunk comes back from SQS
        try:
            end = time.monotonic() + 180
            while (done := jobs.get(tenant, job.batch_id)) and done.status == "in_progress":
                assert time.monotonic() < end, (tmp_path / "worker-2.log").read_text()
                time.sleep(0.1)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
        assert done is not None and done.status == "completed", done
        assert (done.total, done.completed, done.failed) == (LINES, LINES, 0)
        assert done.error_file_id is None
        data = files.content(tenant, done.output_file_id) or b""
        output = [json.loads(x) for x in data.splitlines()]
        ids = [x["custom_id"] for x in output]
        assert len(ids) == LINES and set(ids) == {f"req-{n}" for n in range(LINES)}
        assert all(x["response"]["status_code"] == 200 for x in output)
        billed = _billed(container, tenant, job.batch_id)
        assert sorted(r.request_id for r in billed) == sorted(
            line_request_id(job.batch_id, f"req-{n}") for n in range(LINES)
        )
        assert {r.task for r in billed} == {"embeddings+batch", "text-classification+batch"}
        # What the killed worker billed was not billed again, and the output says the same.
        assert {x["response"]["request_id"] for x in output} == {r.request_id for r in billed}
    finally:
        container.close()
