"""Model benchmark: PyTorch eager vs ONNX Runtime fp32 vs int8, on 2 threads.

For each model and batch size (1 and 32) it measures median and p90 latency, throughput,
the speed-up over eager, the ONNX file size and the session-creation time, checks the int8
embeddings' cosine similarity to eager, prints a rich table and writes
``benchmarks/results/models.json``. It reads the built registry (``AIMAAS_REGISTRY``, default
``build/registry``; run ``make models`` first).

Targets: ONNX fp32 >= 2.5x eager at batch 1 for MiniLM and MobileNetV2; int8 MiniLM >= 6x
eager with cosine >= 0.99.

Object detection (ssd-mobilenet-v2) has no eager model (its reference is TensorFlow, export
only): it is measured at batch 1 and 8 next to MobileNetV2 classification, both as the graph
alone and through the serving runner (decode, resize, graph, post-processing) on the same
real photos.

Usage: ``python benchmarks/bench_models.py [--quick] [--threads 2] [--seconds 2]
[--only NAME ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Worker threads spin-wait by default (OpenMP in torch, ONNX Runtime's pool), as in production.
# On a loaded machine that turns other processes' load into stalls that hit eager PyTorch far
# harder than ONNX Runtime: --passive makes both wait passively instead.
SPIN = "--passive" not in sys.argv
if not SPIN:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when libgomp starts
if str(REPO) not in sys.path:  # model_export, when run as a file rather than `-m benchmarks`
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from aimaas_testing.paths import registry_path  # noqa: E402
from model_export.models import (  # noqa: E402
    minilm,
    mobilenet,
    sentence_encoder,
    silero_vad,
    topic_classifier,
    topic_data,
)
from model_export.models.mobilenet import photo_batch  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "models.json"
TARGETS = {
    "all-minilm-l6-v2": {"onnx-fp32": 2.5, "onnx-int8": 6.0},
    "mobilenet-v2": {"onnx-fp32": 2.5},
}
# Batch 1 is one ~32-token sentence; batch 32 is 32 texts of ~128 tokens.
SHORT = (
    "The quick brown fox jumps over the lazy dog near the quiet river bank, while two "
    "children watch from the old stone bridge and laugh."
)
LONG = " ".join(["Benchmarks measure the latency and throughput of embedding models."] * 8)


def timed_group(
    fns: dict[str, Callable[[], Any]], seconds: float, min_runs: int = 5
) -> dict[str, list[float]]:
    """Latencies (s) of each callable, measured in alternating blocks of about 0.25 s.

    Alternating blocks keep the comparison fair when background load drifts; the first call
    of each block is dropped, since the other runtime's threads may still be spinning.
    """
    for fn in fns.values():  # warm-up: first calls allocate and pick kernels
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    deadline = time.perf_counter() + seconds * len(fns)
    while min(len(t) for t in times.values()) < min_runs or time.perf_counter() < deadline:
        for name, fn in fns.items():
            fn()
            block_end = time.perf_counter() + 0.25
            while True:
                start = time.perf_counter()
                fn()
                end = time.perf_counter()
                times[name].append(end - start)
                if end >= block_end:
                    break
        if min(len(t) for t in times.values()) >= 5000:
            break
    return times


def eager_call(module: Any, *inputs: Any) -> Callable[[], Any]:
    def call() -> Any:
        with torch.inference_mode():
            return module(*inputs)

    return call


def summary(times: list[float], batch: int) -> dict[str, float]:
    ordered = sorted(times)
    median = statistics.median(ordered)
    return {
        "median_ms": median * 1e3,
        "p90_ms": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] * 1e3,
        "throughput_per_s": batch / median,
        "runs": len(ordered),
    }


def session(path: Path, threads: int) -> tuple[ort.InferenceSession, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not SPIN:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    start = time.perf_counter()
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sess, time.perf_counter() - start


def artifact(registry: Path, name: str) -> Path | None:
    manifest = registry / name / "1.0.0" / "manifest.json"
    if not manifest.is_file():
        return None
    return manifest.parent / json.loads(manifest.read_text())["artifact"]["file"]


def text_inputs(batch: int) -> list[str]:
    return [SHORT] if batch == 1 else [LONG] * batch


def bench_text(
    name: str, eager: Any, variants: dict[str, str], registry: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """A MiniLM-based model: eager module vs its ONNX variants (name -> registry model)."""
    tok = minilm.encoder()
    out: dict[str, Any] = {"model": name, "batches": {}}
    for batch in (1, 32):
        encoded = tok.encode(text_inputs(batch))
        ids, mask = torch.from_numpy(encoded.input_ids), torch.from_numpy(encoded.attention_mask)
        feeds = encoded.feeds(minilm.INPUT_NAMES)
        fns = {"pytorch-eager": eager_call(eager, ids, mask)}
        reference = fns["pytorch-eager"]().numpy()
        extra: dict[str, dict[str, float]] = {}
        for variant, registry_name in variants.items():
            path = artifact(registry, registry_name)
            if path is None:
                continue
            sess, created = session(path, args.threads)
            result = sess.run(None, feeds)[0]
            fns[variant] = lambda s=sess, f=feeds: s.run(None, f)
            extra[variant] = {"size_mb": path.stat().st_size / 1e6, "session_s": created}
            if name == "all-minilm-l6-v2":
                cos = np.sum(reference * result, axis=1) / (
                    np.linalg.norm(reference, axis=1) * np.linalg.norm(result, axis=1)
                )
                extra[variant]["min_cosine_vs_eager"] = float(cos.min())
            else:
                extra[variant]["top1_agreement_vs_eager"] = float(
                    np.mean(np.argmax(reference, 1) == np.argmax(result, 1))
                )
        times = timed_group(fns, args.seconds)
        rows = {k: {**summary(v, batch), **extra.get(k, {})} for k, v in times.items()}
        out["batches"][str(batch)] = {"tokens_per_text": int(encoded.input_ids.shape[1]), **rows}
    return out


def bench_image(registry: Path, args: argparse.Namespace) -> dict[str, Any]:
    eager = mobilenet.torch_model()
    photos = photo_batch()
    out: dict[str, Any] = {"model": "mobilenet-v2", "batches": {}}
    path = artifact(registry, "mobilenet-v2")
    for batch in (1, 32):
        pixels = np.ascontiguousarray(np.resize(photos, (batch, 3, 224, 224)))
        fns = {"pytorch-eager": eager_call(eager, torch.from_numpy(pixels))}
        extra: dict[str, dict[str, float]] = {}
        if path is not None:
            sess, created = session(path, args.threads)
            feeds = {"pixel_values": pixels}
            fns["onnx-fp32"] = lambda s=sess, f=feeds: s.run(None, f)
            extra["onnx-fp32"] = {"size_mb": path.stat().st_size / 1e6, "session_s": created}
        times = timed_group(fns, args.seconds)
        out["batches"][str(batch)] = {
            k: {**summary(v, batch), **extra.get(k, {})} for k, v in times.items()
        }
    return out


def bench_detection(registry: Path, args: argparse.Namespace) -> dict[str, Any]:
    """ssd-mobilenet-v2 next to mobilenet-v2 at batch 1 and 8: graph alone and serving runner,
    on the detection gate's seven photos (repeated to fill a batch)."""
    from aimaas.inference import wire
    from aimaas.inference.detection import detection_batch
    from aimaas.inference.runners import load_runner
    from aimaas.registry import FolderStore, ModelRegistry
    from model_export.models.ssd_mobilenet import PHOTOS, SIZE, photo_bytes

    models = ModelRegistry(FolderStore(registry))
    out: dict[str, Any] = {"model": "ssd-mobilenet-v2", "batches": {}}
    if artifact(registry, "ssd-mobilenet-v2") is None:
        return out
    files = [photo_bytes(ref) for ref in PHOTOS]
    runners = {}
    for name in ("mobilenet-v2", "ssd-mobilenet-v2"):
        manifest = models.resolve(name)
        runners[name] = load_runner(manifest, models.verified_dir(manifest), threads=args.threads)
    for batch in (1, 8):
        images = [files[i % len(files)] for i in range(batch)]
        pixels, _ = detection_batch(images, size=SIZE)
        classify = np.ascontiguousarray(np.resize(photo_batch(), (batch, 3, 224, 224)))
        detector = runners["ssd-mobilenet-v2"].session
        classifier = runners["mobilenet-v2"].session
        fns = {
            "detect graph": lambda s=detector, p=pixels: s.run(None, {"image_tensor": p}),
            "detect runner": lambda r=runners["ssd-mobilenet-v2"], i=images: r.run(
                wire.ObjectDetectionRequest(images=i)
            ),
            "classify graph": lambda s=classifier, p=classify: s.run(None, {"pixel_values": p}),
            "classify runner": lambda r=runners["mobilenet-v2"], i=images: r.run(
                wire.ImageClassificationRequest(images=i)
            ),
        }
        times = timed_group(fns, args.seconds)
        out["batches"][str(batch)] = {k: summary(v, batch) for k, v in times.items()}
    return out


def bench_vad(registry: Path, args: argparse.Namespace) -> dict[str, Any]:
    """silero-vad: one 32 ms window (its only batch shape in serving), TorchScript vs ONNX."""
    path = artifact(registry, "silero-vad")
    jit = torch.jit.load(str(silero_vad.package_file("silero-vad", "silero_vad.jit")))
    window = np.random.default_rng(0).standard_normal(576).astype(np.float32) * 0.1
    fns = {"pytorch-eager": eager_call(jit, torch.from_numpy(window[64:])[None], 16000)}
    extra: dict[str, dict[str, float]] = {}
    if path is not None:
        sess, created = session(path, args.threads)
        feeds = {
            "input": window[None],
            "state": np.zeros((2, 1, 128), np.float32),
            "sr": np.array(16000, dtype=np.int64),
        }
        fns["onnx-fp32"] = lambda: sess.run(None, feeds)
        extra["onnx-fp32"] = {"size_mb": path.stat().st_size / 1e6, "session_s": created}
    times = timed_group(fns, args.seconds)
    rows = {k: {**summary(v, 1), **extra.get(k, {})} for k, v in times.items()}
    if "onnx-fp32" in rows:
        rows["onnx-fp32"]["realtime_factor"] = 0.032 / (rows["onnx-fp32"]["median_ms"] / 1e3)
    return {"model": "silero-vad", "batches": {"1": rows}}


def bench_kws(registry: Path, args: argparse.Namespace) -> dict[str, Any]:
    """keyword-spotter: ONNX only (its PyTorch weights exist only during the build)."""
    path = artifact(registry, "keyword-spotter")
    out: dict[str, Any] = {"model": "keyword-spotter", "batches": {}}
    if path is None:
        return out
    for batch in (1, 32):
        feats = np.random.default_rng(0).standard_normal((batch, 40, 98)).astype(np.float32)
        sess, created = session(path, args.threads)
        fn = {"onnx-fp32": lambda s=sess, f=feats: s.run(None, {"features": f})}
        row = summary(timed_group(fn, args.seconds)["onnx-fp32"], batch)
        row.update(size_mb=path.stat().st_size / 1e6, session_s=created)
        out["batches"][str(batch)] = {"onnx-fp32": row}
    return out


def add_speedups(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-up over eager per variant, and whether the targets are met."""
    checks = []
    for result in results:
        for batch, rows in result["batches"].items():
            eager = rows.get("pytorch-eager")
            for variant, row in rows.items():
                if not isinstance(row, dict) or variant == "pytorch-eager" or eager is None:
                    continue
                row["speedup_vs_eager"] = eager["median_ms"] / row["median_ms"]
                target = TARGETS.get(result["model"], {}).get(variant)
                if target is not None and batch == "1":
                    passed = row["speedup_vs_eager"] >= target
                    if "min_cosine_vs_eager" in row:
                        passed = passed and row["min_cosine_vs_eager"] >= 0.99
                    checks.append(
                        {
                            "model": result["model"],
                            "variant": variant,
                            "target_speedup": target,
                            "speedup": round(row["speedup_vs_eager"], 2),
                            "passed": passed,
                        }
                    )
    return checks


def table(results: list[dict[str, Any]]) -> Table:
    out = Table(title="models: PyTorch eager vs ONNX Runtime")
    for column in (
        "model",
        "batch",
        "variant",
        "median ms",
        "p90 ms",
        "items/s",
        "speed-up",
        "size MB",
        "session s",
        "quality",
    ):
        out.add_column(column, justify="right" if column not in ("model", "variant") else "left")
    for result in results:
        for batch, rows in result["batches"].items():
            for variant, row in rows.items():
                if not isinstance(row, dict):
                    continue
                quality = next(
                    (
                        f"{k}={v:.4f}"
                        for k, v in row.items()
                        if k.endswith("vs_eager") and not k.startswith("speedup")
                    ),
                    "",
                )
                out.add_row(
                    result["model"],
                    batch,
                    variant,
                    f"{row['median_ms']:.2f}",
                    f"{row['p90_ms']:.2f}",
                    f"{row['throughput_per_s']:.1f}",
                    f"{row['speedup_vs_eager']:.2f}x" if "speedup_vs_eager" in row else "-",
                    f"{row['size_mb']:.1f}" if "size_mb" in row else "-",
                    f"{row['session_s']:.3f}" if "session_s" in row else "-",
                    quality,
                )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.5 s per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--passive", action="store_true", help="worker threads wait passively (loaded machine)"
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="benchmark only these models")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 0.5
    torch.set_num_threads(args.threads)
    registry = registry_path()
    if artifact(registry, "all-minilm-l6-v2") is None:
        print(f"no models in {registry}; run `make models` first", file=sys.stderr)
        return 2
    console = Console(width=160)
    results = []
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (
            "all-minilm-l6-v2",
            lambda: bench_text(
                "all-minilm-l6-v2",
                minilm.torch_encoder(),
                {"onnx-fp32": "all-minilm-l6-v2", "onnx-int8": "all-minilm-l6-v2-int8"},
                registry,
                args,
            ),
        ),
        (
            "minilm-topic-classifier",
            lambda: bench_text(
                "minilm-topic-classifier",
                sentence_encoder.torch_classifier(
                    minilm.BACKBONE,
                    topic_classifier.description_head(minilm.BACKBONE, topic_data.DESCRIPTIONS),
                ),
                {"onnx": "minilm-topic-classifier"},
                registry,
                args,
            ),
        ),
        ("mobilenet-v2", lambda: bench_image(registry, args)),
        ("keyword-spotter", lambda: bench_kws(registry, args)),
        ("silero-vad", lambda: bench_vad(registry, args)),
        ("ssd-mobilenet-v2", lambda: bench_detection(registry, args)),
    ]
    if args.only:
        steps = [(name, step) for name, step in steps if name in args.only]
    for name, step in steps:
        console.log(f"benchmarking {name}")
        results.append(step())
    checks = add_speedups(results)
    console.print(table(results))
    for check in checks:
        colour = "green" if check["passed"] else "red"
        console.print(
            f"[{colour}]{check['model']} {check['variant']}: {check['speedup']}x "
            f"(target {check['target_speedup']}x)[/]"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "threads": args.threads,
                "seconds_per_measurement": args.seconds,
                "spin_wait": SPIN,
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average_1m": os.getloadavg()[0],
                    "onnxruntime": ort.__version__,
                    "torch": torch.__version__,
                },
                "results": results,
                "targets": checks,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
