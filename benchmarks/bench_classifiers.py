"""Custom classifiers (issue 19): training time against set size, held-out accuracy vs zero-shot.

Runs the real API in process (FastAPI TestClient, real ONNX models from the registry, the local
classifier store, a SQLite ledger) with ONNX Runtime on ONE thread, a Lambda-sized CPU (the
text function's 1769 MB+ gives one vCPU). Prints two tables and writes
``benchmarks/results/classifiers.json``:

1. Training time of ``POST /v1/classifiers`` by number of examples, labels and text length
   (the limits in :mod:`aimaas.classifiers.training` come from this table).
2. Accuracy on the 60 held-out support tickets of ``tests/data/support_tickets.json`` of a
   classifier trained on its 120 training tickets, next to zero-shot classification over the
   same label names, for each base embeddings model.

Usage (the README's figures were taken pinned to one core, so numpy's fits get one core too)::

    taskset -c 1 python benchmarks/bench_classifiers.py [--quick] [--registry build/registry]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from aimaas.api import Container, create_app
from aimaas.auth import Principal
from aimaas.backends import BackendRouter, LocalOnnxBackend
from aimaas.backends.router import UnconfiguredGpuBackend
from aimaas.classifiers.local import LocalClassifierStore
from aimaas.config import Settings, StageConfig
from aimaas.metering import Meter
from aimaas.metering.sqlite import SqliteLedger
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.auth import FixedAuthenticator
from aimaas_testing.paths import REPO_ROOT, registry_path

DATA = REPO_ROOT / "tests" / "data" / "support_tickets.json"
OUTPUT = REPO_ROOT / "benchmarks" / "results" / "classifiers.json"
BASE_MODELS = ("all-minilm-l6-v2-int8", "all-minilm-l6-v2")


def client(registry: Path, folder: Path) -> TestClient:
    """The API with real models, one ONNX thread, no deadline (the table measures it)."""
    models = ModelRegistry(FolderStore(registry), StageConfig.load("local").default_models)
    ledger = SqliteLedger(folder / "ledger.sqlite")
    container = Container(
        settings=Settings(
            registry_path=registry, sqlite_path=folder / "db.sqlite", request_deadline_s=0
        ),
        registry=models,
        backends=BackendRouter(LocalOnnxBackend(models, threads=1), UnconfiguredGpuBackend(), ()),
        authenticator=FixedAuthenticator(Principal(tenant_id="t_bench", key_id="k", plan="pro")),
        meter=Meter(ledger),
        ledger=ledger,
        classifiers=LocalClassifierStore(folder / "classifiers"),
    )
    return TestClient(create_app(container=container))


def synthetic(n: int, labels: int, chars: int, tickets: list[dict[str, str]]) -> list[dict]:
    """``n`` examples over ``labels`` labels, each text about ``chars`` long (ticket sentences
    strung together, so every text is different and tokenises like real prose)."""
    examples = []
    for i in range(n):
        parts, j = [], i
        while sum(len(p) + 1 for p in parts) < chars:
            parts.append(tickets[j % len(tickets)]["text"])
            j += 7
        examples.append({"text": " ".join(parts)[:chars], "label": f"label {i % labels}"})
    return examples


def timing_rows(api: TestClient, tickets: list[dict[str, str]], quick: bool) -> list[dict]:
    # The largest allowed sets: 1000 short examples over 50 labels, and 250k characters in
    # total as 1000 x 150 or 75 x 2000 (texts past 256 tokens are truncated by the model).
    cases = [(120, 6, 60), (500, 10, 60), (1000, 50, 60), (75, 10, 2000)]
    if not quick:
        cases.append((1000, 50, 150))
    api.post("/v1/embeddings", json={"input": "warm up"})  # load the model outside the timings
    rows = []
    for n, labels, chars in cases:
        examples = synthetic(n, labels, chars, tickets)
        started = time.perf_counter()
        response = api.post("/v1/classifiers", json={"name": "bench", "examples": examples})
        seconds = time.perf_counter() - started
        response.raise_for_status()
        body = response.json()
        rows.append(
            {
                "examples": n,
                "labels": labels,
                "chars_per_text": chars,
                "tokens": round(body["usage"]["units"] * 1000),
                "seconds": round(seconds, 2),
            }
        )
        api.delete(f"/v1/classifiers/{body['id']}")
    return rows


def accuracy_rows(api: TestClient, data: dict[str, Any]) -> list[dict]:
    held_out = data["held_out"]
    texts = [x["text"] for x in held_out]
    truth = [x["label"] for x in held_out]

    def accuracy(predicted: list[str]) -> float:
        return sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)

    rows = []
    for base in BASE_MODELS:
        created = api.post(
            "/v1/classifiers",
            json={"name": "tickets", "examples": data["train"], "base_model": base},
        )
        created.raise_for_status()
        classifier = created.json()
        trained = api.post(
            "/v1/text-classification", json={"model": classifier["id"], "text": texts}
        ).json()
        zero_shot = api.post(
            "/v1/text-classification", json={"model": base, "text": texts, "labels": data["labels"]}
        ).json()
        rows.append(
            {
                "base_model": base,
                "cv_accuracy": round(classifier["cross_validation"]["accuracy"], 3),
                "cv_std": round(classifier["cross_validation"]["std"], 3),
                "held_out_accuracy": accuracy([r["label"] for r in trained["results"]]),
                "zero_shot_accuracy": accuracy([r["label"] for r in zero_shot["results"]]),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = [" | ".join(keys), " | ".join("---" for _ in keys)]
    lines += [" | ".join(str(row[k]) for k in keys) for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the largest case")
    parser.add_argument("--registry", type=Path, default=registry_path())
    args = parser.parse_args()
    data = json.loads(DATA.read_text())
    with tempfile.TemporaryDirectory() as folder, client(args.registry, Path(folder)) as api:
        accuracy = accuracy_rows(api, data)
        print("Held-out accuracy (60 tickets, 6 intents; trained on 120) vs zero-shot")
        print(table(accuracy), "\n")
        timings = timing_rows(api, data["train"], args.quick)
        print("POST /v1/classifiers, one ONNX thread (embeddings + 5-fold CV + final fit)")
        print(table(timings))
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "accuracy": accuracy,
                "training": timings,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
