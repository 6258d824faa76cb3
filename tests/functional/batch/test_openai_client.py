"""The official ``openai`` client, unchanged, against ``aimaas_local serve`` (a real server in
its own process, real keys, the local batch engine)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aimaas_testing.auth import tenant_key
from aimaas_testing.paths import REGISTRY, has_model
from aimaas_testing.servers import ServerProcess, launch_local_server
from tests.functional.batch.conftest import mixed_lines

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not has_model("all-minilm-l6-v2-int8"):
        pytest.skip(f"no model registry at {REGISTRY}; run `make models`")
    folder = tmp_path_factory.mktemp("batch-server")
    running = launch_local_server(
        registry=REGISTRY,
        db=folder / "aimaas.db",
        log_path=folder / "server.log",
        args=["--log-level", "warning"],
        env={"AIMAAS_ONNX_THREADS": "1", "AIMAAS_BATCH_CHUNK_LINES": "2"},
    )
    try:
        yield running
    finally:
        running.stop()


def _client(server: ServerProcess, label: str) -> openai.OpenAI:
    key = tenant_key(Path(server.db), label=label)
    return openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0)


def _jsonl(lines: list) -> bytes:
    return b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)


def test_files_and_batches_work_with_the_openai_client(server: ServerProcess) -> None:
    client = _client(server, "openai a")
    uploaded = client.files.create(file=("requests.jsonl", _jsonl(mixed_lines())), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.purpose == "batch"
    assert client.files.retrieve(uploaded.id).bytes == uploaded.bytes
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert batch.status in {"validating", "in_progress", "completed"}
    deadline = time.monotonic() + 120
    while batch.status not in {"completed", "failed", "cancelled"}:
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (7, 5, 2)
    output = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    errors = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    assert len(output) == 5 and len(errors) == 2
    assert {x["custom_id"] for x in output} == {"emb-1", "txt-1", "img-1", "aud-1", "emb-2"}
    assert [b.id for b in client.batches.list()] == [batch.id]
    assert client.batches.cancel(batch.id).status == "completed"  # an ended batch stays ended

    other = _client(server, "openai b")
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(batch.output_file_id)
    assert list(other.batches.list()) == []
