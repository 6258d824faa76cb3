"""Batch API benchmark: a 10,000-line batch mixing four tasks on the local engine, against the
same lines sent as synchronous HTTP calls to the same server.

One ``aimaas_local serve`` process (uvicorn, the local batch adapters: folder, SQLite, worker
threads), a tenant of its own on the enterprise plan (no hard limit in the way). Lines are one
input each, cycling through embeddings, text classification, image classification (a 64x48
PNG) and keyword spotting (1 s of WAV).

1. Batch: upload, create, poll until it ends; lines/s from ``created_at`` to ``completed_at``
   (the server's own stamps, whole seconds) and from the client's clock. Checks the proof of
   issue 21: the output has exactly one line per input (by custom_id), the ledger holds one
   record per line, every one at a ``+batch`` task.
2. Synchronous: the same lines as HTTP calls (closed loop, ``--clients`` at once), lines/s.

With ``--localstack URL`` the batch runs on the LocalStack profile's engine instead: files in
LocalStack's S3 (KMS-encrypted with a LocalStack key), chunks on its SQS queue (with a
dead-letter queue), and the worker on the host, ``--workers`` threads of this process polling
the queue (``SqsWorkQueue.poll``); jobs and the ledger stay in SQLite (LocalStack's DynamoDB does
not run here). ``--no-sync`` skips step 2.

Prints a table; JSON goes to ``benchmarks/results/batch.json`` (``--out`` names another).

Run: ``.venv/bin/python benchmarks/bench_batch.py [--lines 10000] [--workers 1] [--clients 2]``
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from aimaas_testing.auth import tenant_key  # noqa: E402
from aimaas_testing.media import image_bytes, wav  # noqa: E402
from aimaas_testing.paths import REGISTRY  # noqa: E402
from aimaas_testing.servers import launch_local_server  # noqa: E402

TEXTS = [
    "The parcel never arrived and nobody answers the phone.",
    "The striker scored twice in the cup final.",
    "Shares fell sharply after the quarterly results.",
    "The new phone has a brighter screen and a longer battery life.",
]


def lines(count: int) -> list[dict[str, Any]]:
    """``count`` request lines cycling through the four tasks."""
    image = base64.b64encode(image_bytes()).decode()
    audio = base64.b64encode(wav(1.0, rate=8000)).decode()  # resampled to 16 kHz by the route
    made = []
    for n in range(count):
        text = TEXTS[n % len(TEXTS)] + f" ({n})"
        kind = n % 4
        if kind == 0:
            url, body = "/v1/embeddings", {"input": text}
        elif kind == 1:
            url, body = "/v1/text-classification", {"text": text}
        elif kind == 2:
            url, body = "/v1/image-classification", {"image": image}
        else:
            url, body = "/v1/audio-classification", {"audio": audio}
        made.append({"custom_id": f"req-{n}", "method": "POST", "url": url, "body": body})
    return made


def run_batch(url: str, key: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    data = b"".join(json.dumps(r).encode() + b"\n" for r in requests)
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        uploaded = client.post(
            "/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"}
        ).json()
        started = time.perf_counter()
        batch = client.post(
            "/v1/batches",
            json={"input_file_id": uploaded["id"], "endpoint": "/v1/embeddings",
                  "completion_window": "24h"},
        ).json()  # fmt: skip
        while batch["status"] not in {"completed", "failed", "cancelled"}:
            time.sleep(0.5)
            batch = client.get(f"/v1/batches/{batch['id']}").json()
        elapsed = time.perf_counter() - started
        output = client.get(f"/v1/files/{batch['output_file_id']}/content").content
    results = [json.loads(x) for x in output.splitlines()]
    return {
        "batch": batch,
        "client_seconds": elapsed,
        "upload_bytes": len(data),
        "output_lines": len(results),
        "custom_ids_match": sorted(r["custom_id"] for r in results)
        == sorted(r["custom_id"] for r in requests),
        "all_200": all(r["response"]["status_code"] == 200 for r in results),
    }


def run_sync(url: str, key: str, requests: list[dict[str, Any]], clients: int) -> float:
    headers = {"Authorization": f"Bearer {key}"}

    def send(chunk: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for r in chunk:
                response = client.post(r["url"], json=r["body"])
                response.raise_for_status()

    parts = [requests[i::clients] for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, parts))
    return time.perf_counter() - started


def localstack_engine(url: str) -> dict[str, str]:
    """A KMS key, a bucket and a queue with its dead-letter queue in LocalStack; the settings
    that point the batch adapters (and boto3) at them."""
    import boto3

    aws = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(aws)
    name = f"aimaas-bench-batch-{int(time.time())}"
    key = boto3.client("kms").create_key(Description=name)["KeyMetadata"]["Arn"]
    boto3.client("s3").create_bucket(Bucket=name)
    sqs = boto3.client("sqs")
    dead = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dead_arn["Attributes"]["QueueArn"], "maxReceiveCount": "5"}
    queue = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(redrive)})[
        "QueueUrl"
    ]
    return {
        **aws,
        "AIMAAS_BATCH_FILE_STORE": "s3",
        "AIMAAS_BATCH_QUEUE": "sqs",
        "AIMAAS_BATCH_BUCKET": name,
        "AIMAAS_BATCH_QUEUE_URL": queue,
        "AIMAAS_KMS_KEY_ID": key,
    }


def host_workers(env: dict[str, str], count: int, stop: threading.Event) -> list[threading.Thread]:
    """``count`` threads polling the queue with one worker container (as on a host)."""
    from aimaas.api.container import build_container
    from aimaas.batch.worker import BatchWorker
    from aimaas.config import Settings

    settings = Settings.from_env(
        {**env, "AIMAAS_REGISTRY": str(REGISTRY), "AIMAAS_BATCH_QUEUE": "sqs"}
    )
    container = build_container(settings)
    worker = BatchWorker(container)

    def poll() -> None:
        while not stop.is_set():
            container.batch.queue.poll(worker.handle, wait_s=1, max_messages=1)

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def ledger_tasks(db: Path) -> Counter[str]:
    with sqlite3.connect(db) as conn:
        return Counter(task for (task,) in conn.execute("SELECT task FROM usage_records"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="local batch worker threads")
    parser.add_argument("--clients", type=int, default=2, help="concurrent synchronous clients")
    parser.add_argument("--chunk-lines", type=int, default=100)
    parser.add_argument("--out", default="batch.json", help="file name in benchmarks/results")
    parser.add_argument("--localstack", default=None, help="LocalStack URL: S3 + SQS engine")
    parser.add_argument("--no-sync", action="store_true", help="skip the synchronous run")
    args = parser.parse_args()
    requests = lines(args.lines)
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "aimaas.db"
        engine = localstack_engine(args.localstack) if args.localstack else {}
        server = launch_local_server(
            registry=REGISTRY,
            db=db,
            log_path=Path(folder) / "server.log",
            args=["--log-level", "warning"],
            env={
                "AIMAAS_BATCH_WORKERS": str(args.workers),
                "AIMAAS_BATCH_CHUNK_LINES": str(args.chunk_lines),
                # 10,000 lines with base64 media are ~30 MB: over the 6 MiB body default.
                "AIMAAS_MAX_BODY_BYTES": str(256 * 1024 * 1024),
                "AIMAAS_BODY_TIMEOUT_S": "60",
                **engine,
            },
        )
        stop = threading.Event()
        workers: list[threading.Thread] = []
        try:
            key = tenant_key(db, plan="enterprise", label="bench")
            # Warm every model once so neither path pays the first load.
            run_sync(server.url, key, requests[:8], 1)
            warm = ledger_tasks(db)
            if engine:
                workers = host_workers(
                    {**engine, "AIMAAS_SQLITE_PATH": str(db)}, args.workers, stop
                )
            batch = run_batch(server.url, key, requests)
            after_batch = ledger_tasks(db) - warm
            sync_s = None if args.no_sync else run_sync(server.url, key, requests, args.clients)
        finally:
            stop.set()
            for thread in workers:
                thread.join(timeout=60)
            server.stop()
    job = batch["batch"]
    server_s = max(1, job["completed_at"] - job["created_at"])
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "lines": args.lines,
        "workers": args.workers,
        "chunk_lines": args.chunk_lines,
        "sync_clients": args.clients,
        "batch_status": job["status"],
        "request_counts": job["request_counts"],
        "output_lines": batch["output_lines"],
        "custom_ids_match": batch["custom_ids_match"],
        "all_200": batch["all_200"],
        "ledger_records_by_task": dict(after_batch),
        "batch_client_seconds": round(batch["client_seconds"], 2),
        "batch_server_seconds": server_s,
        "batch_lines_per_s": round(args.lines / batch["client_seconds"], 1),
        "sync_seconds": None if sync_s is None else round(sync_s, 2),
        "sync_lines_per_s": None if sync_s is None else round(args.lines / sync_s, 1),
        "engine": "localstack s3 + sqs, host worker" if engine else "local (folder, thread)",
    }
    out = ROOT / "benchmarks" / "results" / args.out
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name, value in report.items():
        print(f"{name:>24}: {value}")
    print(table(report))


def table(report: dict[str, Any]) -> str:
    """The two paths side by side, as the README's table."""
    rows = [
        ("batch", report["workers"], "worker threads", report["batch_client_seconds"],
         report["batch_lines_per_s"]),
        ("synchronous HTTP", report["sync_clients"], "clients", report["sync_seconds"],
         report["sync_lines_per_s"]),
    ]  # fmt: skip
    lines = [
        f"\n{report['lines']} lines, {report['engine']}",
        "| path | concurrency | seconds | lines/s |",
        "|---|---|---|---|",
    ]
    for path, count, what, seconds, rate in rows:
        shown = "(not run)" if seconds is None else f"{seconds:.1f}"
        lines.append(f"| {path} | {count} {what} | {shown} | {rate or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
