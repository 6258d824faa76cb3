"""The whole batch engine on the AWS adapters (S3, DynamoDB, SQS and the DynamoDB ledger, in
moto) with real models: the API queues chunks on SQS, a host worker polls them (as in the
LocalStack profile; in AWS the worker Lambda gets the same messages), and a redelivered
message bills and counts nothing twice."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aimaas.api import create_app
from aimaas.api.container import build_container
from aimaas.batch.aws import SqsWorkQueue
from aimaas.batch.jobs import chunks_of
from aimaas.batch.lines import line_spans
from aimaas.batch.worker import BatchWorker
from aimaas.config import Settings
from aimaas_testing.metering import moto_tables
from aimaas_testing.paths import REGISTRY, has_model
from tests.functional.batch.conftest import BatchApp, mixed_lines
from tests.functional.batch.test_store_contract import moto_batch_resources
from tests.functional.classifiers.conftest import HeaderTenantAuthenticator


@pytest.fixture
def app(tmp_path: Path) -> Iterator[BatchApp]:
    if not has_model("all-minilm-l6-v2-int8"):
        pytest.skip(f"no model registry at {REGISTRY}; run `make models`")
    with moto_tables() as env:
        env = {
            **env,
            **moto_batch_resources(),
            "AIMAAS_REGISTRY": str(REGISTRY),
            "AIMAAS_SQLITE_PATH": str(tmp_path / "unused.db"),
            "AIMAAS_ONNX_THREADS": "1",
            "AIMAAS_BATCH_CHUNK_LINES": "3",
        }
        os.environ.update(env)  # moto_tables restores the environment on exit
        container = build_container(Settings.from_env(env))
        container.authenticator = HeaderTenantAuthenticator()
        client = TestClient(create_app(container=container))
        try:
            yield BatchApp(client, container)
        finally:
            client.close()
            container.close()


def test_a_batch_runs_on_sqs_s3_and_dynamodb_and_a_redelivery_bills_once(app: BatchApp) -> None:
    batch = app.container.batch
    assert batch is not None and isinstance(batch.queue, SqsWorkQueue)
    file_id = app.upload(mixed_lines()).json()["id"]
    created = app.create(file_id)
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "in_progress"  # nothing runs until a worker polls
    worker = BatchWorker(app.container)
    job = batch.jobs.get("t_a", created.json()["id"])
    spans = line_spans(batch.files.content("t_a", file_id) or b"")
    first = chunks_of(job, spans, 3)[0]
    assert first.length > 0
    worker.handle(first)
    worker.handle(first)  # delivered twice while the batch runs (SQS is at least once)
    assert batch.jobs.get("t_a", job.batch_id).chunks_done == 1
    assert len(app.records()) == 2
    while batch.queue.poll(worker.handle, wait_s=0):  # chunk 0 a third time, then the rest
        pass
    done = app.get(f"/v1/batches/{created.json()['id']}").json()
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 7, "completed": 5, "failed": 2}
    assert len(app.lines(done["output_file_id"])) == 5
    assert len(app.lines(done["error_file_id"])) == 2
    assert len(app.records()) == 5 and all(r.task.endswith("+batch") for r in app.records())

    batch.queue.send(chunks_of(job, spans, 3))  # every message again, as after a worker crash
    while batch.queue.poll(worker.handle, wait_s=0):
        pass
    again = app.get(f"/v1/batches/{done['id']}").json()
    assert again["request_counts"] == done["request_counts"]
    assert len(app.records()) == 5
    assert app.get(f"/v1/batches/{done['id']}", "b").status_code == 404


def test_the_worker_lambda_reports_only_failed_chunks(app: BatchApp) -> None:
    import importlib.util
    import json

    from aimaas.batch.worker import handle_sqs_event

    path = Path(__file__).parents[3] / "functions/batch_worker/batch_worker_handler.py"
    spec = importlib.util.spec_from_file_location("batch_worker_handler", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # builds its own container from the moto environment
    module.worker.container.authenticator = HeaderTenantAuthenticator()

    file_id = app.upload(mixed_lines()[:4]).json()["id"]
    batch_id = app.create(file_id).json()["id"]
    batch = app.container.batch
    assert batch is not None
    job = batch.jobs.get("t_a", batch_id)
    spans = line_spans(batch.files.content("t_a", file_id) or b"")
    records = [
        {"messageId": f"m{c.index}", "body": json.dumps(c.to_message())}
        for c in chunks_of(job, spans, 3)
    ]
    records.append({"messageId": "broken", "body": "{}"})
    assert module.handler({"Records": records}, None) == {
        "batchItemFailures": [{"itemIdentifier": "broken"}]
    }
    done = app.get(f"/v1/batches/{batch_id}").json()
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 3
    assert handle_sqs_event(module.worker, {"Records": records[:1]}) == {"batchItemFailures": []}
    module.worker.container.close()
