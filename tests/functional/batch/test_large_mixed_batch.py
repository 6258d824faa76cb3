"""A large batch mixing four tasks completes with one output line per input and one ledger
record per line at the batch price: 10,000 lines on the local engine (worker threads, folder,
SQLite), 1,000 on the AWS adapters in moto (S3, DynamoDB jobs and ledger, SQS polled by host
worker threads)."""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from aimaas.batch.records import line_request_id
from aimaas.batch.worker import run_host_worker
from aimaas.plans import load_catalog
from aimaas_testing.media import image_bytes, wav
from tests.functional.batch.conftest import BatchApp
from tests.functional.batch.test_aws_engine import app as aws_app  # noqa: F401 - a fixture

TASKS = (
    "embeddings+batch",
    "text-classification+batch",
    "image-classification+batch",
    "audio-classification+batch",
)
TEXTS = (
    "The parcel never arrived and nobody answers the phone.",
    "The striker scored twice in the cup final.",
    "Shares fell sharply after the quarterly results.",
    "The new phone has a brighter screen and a longer battery life.",
)


def mixed(count: int) -> list[dict[str, Any]]:
    """``count`` lines, a quarter of each task, small inputs, in a shuffled order."""
    image = base64.b64encode(image_bytes(size=(32, 24))).decode()
    audio = base64.b64encode(wav(0.5, rate=8000)).decode()
    made = []
    for n in range(count):
        text = f"{TEXTS[n % 4]} ({n})"
        url, body = (
            ("/v1/embeddings", {"input": text}),
            ("/v1/text-classification", {"text": text}),
            ("/v1/image-classification?top_k=2", {"image": image}),
            ("/v1/audio-classification", {"audio": audio}),
        )[n % 4]
        made.append({"custom_id": f"req-{n}", "method": "POST", "url": url, "body": body})
    random.Random(21).shuffle(made)  # noqa: S311 - the output's order is the engine's, not the input's
    return made


def check(app: BatchApp, batch: dict[str, Any], count: int, seconds: float) -> None:
    """One output line per input, one ledger record per line, each at the batch price."""
    assert batch["status"] == "completed", batch
    assert batch["request_counts"] == {"total": count, "completed": count, "failed": 0}
    assert batch["error_file_id"] is None
    outputs = app.lines(batch["output_file_id"])
    ids = Counter(x["custom_id"] for x in outputs)
    assert len(outputs) == count and set(ids) == {f"req-{n}" for n in range(count)}
    assert max(ids.values()) == 1
    records = {r.request_id: r for r in app.records()}
    assert set(records) == {line_request_id(batch["id"], c) for c in ids}
    assert Counter(r.task for r in records.values()) == {t: count // 4 for t in TASKS}
    catalog = load_catalog()
    assert catalog.batch_discount == Decimal("0.5")
    for x in outputs:
        body = x["response"]["body"]
        record = records[x["response"]["request_id"]]
        model = body["model"].split("@")[0]
        expected = catalog.price(record.task, model, record.units, "pro")
        assert body["usage"]["price_usd"] == pytest.approx(float(expected), rel=1e-9)
        assert expected < catalog.price(
            record.task.removesuffix("+batch"), model, record.units, "pro"
        )
    print(f"\n{count} mixed lines in {seconds:.1f} s: {count / seconds:.1f} lines/s")


@pytest.mark.slow
def test_ten_thousand_mixed_lines_complete_locally(make_app: Callable[..., BatchApp]) -> None:
    app = make_app(batch_chunk_lines=100, batch_workers=2, max_body_bytes=64 * 1024 * 1024)
    uploaded = app.upload(mixed(10_000))
    assert uploaded.status_code == 200, uploaded.text
    started = time.monotonic()
    created = app.create(uploaded.json()["id"])
    assert created.status_code == 200, created.text
    batch = app.wait(created.json()["id"], timeout_s=600)
    check(app, batch, 10_000, time.monotonic() - started)


@pytest.mark.slow
def test_a_thousand_mixed_lines_complete_on_the_aws_adapters(aws_app: BatchApp) -> None:  # noqa: F811
    import boto3

    batch = aws_app.container.batch
    assert batch is not None
    # Chunks take longer than the fixture's 1 s visibility timeout (set for redelivery tests).
    boto3.client("sqs").set_queue_attributes(
        QueueUrl=batch.queue.queue_url, Attributes={"VisibilityTimeout": "120"}
    )
    batch.chunk_lines = 50
    uploaded = aws_app.upload(mixed(1_000))
    assert uploaded.status_code == 200, uploaded.text
    started = time.monotonic()
    created = aws_app.create(uploaded.json()["id"])
    assert created.status_code == 200, created.text
    stop = threading.Event()
    workers = run_host_worker(aws_app.container, stop, threads=2, wait_s=0)
    try:
        done = aws_app.wait(created.json()["id"], timeout_s=600)
    finally:
        stop.set()
        for thread in workers:
            thread.join()
    check(aws_app, done, 1_000, time.monotonic() - started)
