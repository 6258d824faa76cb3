"""GPU check of the GPU server: providers, parity of GPU against CPU outputs, batching speed.

Run by ``scripts/gpu_check.sh`` inside the virtualenv it prepares; ``--target cpu`` runs the
same steps with the CPU provider (how it is tested on machines without a GPU).

1. Providers: what this ONNX Runtime offers, and whether a CUDA session really starts.
2. Parity: for every model in the registry, the same requests go to the server on the target
   device (fp32, and fp16 forced through its parity gate) and to the in-process CPU backend the
   inference Lambda uses; printed: max |diff|, min cosine (embeddings), top-1 agreement
   (classifiers), equal segments (VAD); for Whisper, the word (Chinese: character) error rate of
   the server's transcript against the CPU one (``beckett.wav``, MIT, from useful-moonshine-onnx;
   AISHELL-1 ``BAC009S0764W0121.wav``, Apache-2.0, from s3tokenizer, for multilingual models),
   after the normalisation the accuracy figures use (``model_export.speech_eval``).
3. Language model (``text-generation`` manifests, ONNX Runtime GenAI): greedy answers of a few
   prompts streamed from the server on the target against the in-process CPU runner (identical
   text and token counts expected), then completion tokens per second at 1/8/32 concurrent
   streams (aggregate and per stream, with the median time to the first piece).
4. Speed: ``benchmarks/bench_gpu_batching.py`` on the target, max batch sizes 1/8/32,
   1/8/32/64 clients; on a GPU once more in float16 (max batch 1 and 32, 1 and 32 clients).

Everything also goes to one JSON file (``--json``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import sys
import time
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # a bare GPU machine: the core from this checkout
    sys.path.insert(0, str(REPO / "src"))

from aimaas.backends.local import LocalOnnxBackend  # noqa: E402
from aimaas.inference import wire  # noqa: E402
from aimaas.manifest import ModelManifest  # noqa: E402
from aimaas.registry import FolderStore, ModelRegistry  # noqa: E402
from benchmarks import bench_gpu_batching as bench  # noqa: E402
from functions.gpu_server.gpuserve.launcher import running_server  # noqa: E402
from model_export.speech_eval import score  # noqa: E402 - jiwer; no torch

HEADER = wire.TARGET_MODEL_HEADER


def providers_step(target: str) -> dict[str, Any]:
    """Which providers exist, and does a CUDA session start (GPU targets only)."""
    import onnxruntime as ort

    from functions.gpu_server.gpuserve.engine import preload_cuda_libraries

    if target != "cpu":
        preload_cuda_libraries()
    info: dict[str, Any] = {
        "onnxruntime": ort.__version__,
        "device": ort.get_device(),
        "available": ort.get_available_providers(),
    }
    print(f"onnxruntime {info['onnxruntime']} ({info['device']}): {info['available']}")
    return info


def png(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:240, 0:320]
    base = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.float64)
    pixels = np.clip(base * 0.6 + rng.random(base.shape) * 100, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def wav(seed: int, seconds: float = 1.5, rate: int = 16000) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = (np.sin(2 * np.pi * 3 * t) > 0).astype(np.float64)  # bursts, like syllables
    voice = np.sin(2 * np.pi * (180 + 40 * seed) * t) * envelope + 0.05 * rng.standard_normal(
        t.size
    )
    samples = (np.clip(voice * 0.5, -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


DATA = Path(__file__).resolve().parent / "gpu_check_data"
WORDS = ("yes", "stop", "go", "left")  # espeak-ng recordings of Speech Commands words


def spoken(word: str) -> bytes:
    return (DATA / f"kw_{word}.wav").read_bytes()


def words_with_pauses(pause_s: float = 0.8) -> bytes:
    """The recorded words one after another with silence between: speech for the VAD."""
    frames, rate = [], 16000
    for word in WORDS:
        with wave.open(io.BytesIO(spoken(word))) as clip:
            rate = clip.getframerate()
            frames.append(np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2"))
            frames.append(np.zeros(int(pause_s * rate), dtype="<i2"))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.concatenate(frames).tobytes())
    return buffer.getvalue()


#: Real speech for the Whisper pass: (file in :data:`DATA`, language, what is said).
SPEECH = (
    (
        "beckett.wav",
        "en",
        "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.",
    ),
    ("BAC009S0764W0121.wav", "zh", "甚至出现交易几乎停滞的情况"),
)


def speech_requests(manifest: ModelManifest) -> list[Any]:
    """One transcription request per recording in a language the model speaks."""
    languages = getattr(manifest.preprocessing, "languages", ["en"])
    return [
        wire.TranscriptionRequest(audio=[(DATA / name).read_bytes()], language=language)
        for name, language, _ in SPEECH
        if language in languages
    ]


def requests_for(manifest: ModelManifest) -> list[Any]:
    """A few wire requests of the model's task: one big batch and some single inputs."""
    texts = bench.TEXTS
    task = manifest.task
    if task == "embeddings":
        bodies = [{"texts": texts}] + [{"texts": [t]} for t in texts[:4]]
    elif task == "text-classification":
        bodies = [{"texts": texts, "top_k": 3}] + [{"texts": [t]} for t in texts[:4]]
    elif task == "image-classification":
        images = [png(i) for i in range(6)]
        bodies = [{"images": images, "top_k": 5}] + [{"images": [i]} for i in images[:2]]
    elif task == "object-detection":
        # A low threshold: random images give few boxes, and boxes are what is compared.
        images = [png(i) for i in range(4)]
        bodies = [{"images": images, "threshold": 0.05}] + [
            {"images": [i], "threshold": 0.05} for i in images[:2]
        ]
    elif task == "audio-classification":
        clips = [spoken(w) for w in WORDS] + [wav(0)]
        bodies = [{"audio": clips}] + [{"audio": [c]} for c in clips[:2]]
    elif task == "automatic-speech-recognition":
        return speech_requests(manifest)
    else:  # voice-activity-detection
        bodies = [{"audio": [words_with_pauses(), wav(1)]}, {"audio": [words_with_pauses(0.4)]}]
    # Split inputs into requests the model accepts (silero-vad takes one clip at a time).
    limit = manifest.max_batch_size
    field = next(k for k in ("texts", "images", "audio") if k in bodies[0])
    chunks = [
        {**b, field: b[field][i : i + limit]}
        for b in bodies
        for i in range(0, len(b[field]), limit)
    ]
    return [wire.REQUEST_ADAPTER.validate_python({"task": task, **b}) for b in chunks]


def compare(got: dict[str, Any], want: dict[str, Any], acc: dict[str, Any]) -> None:
    """Accumulate differences between a server answer and the CPU reference."""
    if "embeddings" in want:
        a = np.asarray(got["embeddings"], dtype=np.float64)
        b = np.asarray(want["embeddings"], dtype=np.float64)
        acc["max_abs_diff"] = max(acc.get("max_abs_diff", 0.0), float(np.abs(a - b).max()))
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        acc["min_cosine"] = min(acc.get("min_cosine", 1.0), float(cos.min()))
    if "predictions" in want:
        for g, w in zip(got["predictions"], want["predictions"], strict=True):
            acc["rows"] = acc.get("rows", 0) + 1
            if not (g and w):  # an image with no detections on one side or both
                acc["top1_agree"] = acc.get("top1_agree", 0) + int(not g and not w)
                continue
            acc["top1_agree"] = acc.get("top1_agree", 0) + int(g[0]["label"] == w[0]["label"])
            scores = {p["label"]: p["score"] for p in g}
            diffs = [abs(scores[p["label"]] - p["score"]) for p in w if p["label"] in scores]
            acc["max_abs_diff"] = max(acc.get("max_abs_diff", 0.0), max(diffs, default=0.0))
    if "segments" in want:
        for g, w in zip(got["segments"], want["segments"], strict=True):
            acc["rows"] = acc.get("rows", 0) + 1
            acc["segments_equal"] = acc.get("segments_equal", 0) + int(g == w)
    if "text" in want:
        chinese = want.get("language") == "zh"
        transcript = score([want["text"]], [got["text"]], chinese=chinese)
        acc["rows"] = acc.get("rows", 0) + 1
        acc["transcript_wer"] = max(acc.get("transcript_wer", 0.0), transcript.wer)
    if "token_counts" in want:
        acc["token_counts_equal"] = acc.get("token_counts_equal", True) and (
            got["token_counts"] == want["token_counts"]
        )


def parity_step(target: str, registry_path: Path, fp16: str) -> list[dict[str, Any]]:
    """Every model through the server on ``target`` against the in-process CPU backend."""
    registry = ModelRegistry(FolderStore(registry_path))
    reference = LocalOnnxBackend(registry)
    # Language models have their own pass (llm_step): greedy tokens, not tensors, are compared.
    names = [n for n in registry.names() if registry.resolve(n).task != "text-generation"]
    env = {
        "AIMAAS_REGISTRY": str(registry_path),
        "AIMAAS_GPU_PRELOAD": ",".join(names),
        "AIMAAS_GPU_FP16": fp16,
        "AIMAAS_GPU_METRICS_S": "0",
        # On a GPU, a silent CPU fallback would make every number below meaningless.
        "AIMAAS_GPU_REQUIRE": "0" if target == "cpu" else "1",
    }
    rows: list[dict[str, Any]] = []
    with running_server(env, target=target, timeout_s=300) as url:
        described = httpx.get(f"{url}/metrics", timeout=30).json()["models"]
        for name in names:
            manifest = registry.resolve(name)
            acc: dict[str, Any] = {}
            for request in requests_for(manifest):
                body = json.loads(
                    wire.RESULT_ADAPTER.dump_json(reference.invoke(manifest, request))
                )
                response = httpx.post(
                    f"{url}/invocations",
                    content=request.model_dump_json(),
                    headers={
                        HEADER: f"{name}/{manifest.version}",
                        "Content-Type": "application/json",
                    },
                    timeout=120,
                )
                response.raise_for_status()
                compare(response.json(), body, acc)
            info = described.get(manifest.model_id, {})
            rows.append(
                {
                    "model": manifest.model_id,
                    "task": manifest.task,
                    "providers": info.get("providers"),
                    "precision": info.get("precision"),
                    "io_binding": info.get("io_binding"),
                    "notes": info.get("notes"),
                    **acc,
                }
            )
    reference.close()
    return rows


#: How far a GPU answer may stray from the CPU Lambda path before the check fails.
PARITY_BOUNDS = {
    # Whisper: float16 on CUDA against int8 on CPU (both beam 5), so not bit-equal: at most one
    # word in ten may differ from the CPU transcript, on every recording.
    "off": {"min_cosine": 0.999, "top1_share": 0.99, "segments_share": 0.9, "wer": 0.1},
    "force": {"min_cosine": 0.99, "top1_share": 0.95, "segments_share": 0.8, "wer": 0.1},
}


def parity_failures(rows: list[dict[str, Any]], fp16: str) -> list[str]:
    """What in ``rows`` breaks :data:`PARITY_BOUNDS` (an empty list when parity holds)."""
    bounds = PARITY_BOUNDS[fp16]
    failures = []
    for r in rows:
        if r.get("min_cosine", 1.0) < bounds["min_cosine"]:
            failures.append(f"{r['model']}: min cosine {r['min_cosine']:.6f}")
        if "top1_agree" in r and r["top1_agree"] < bounds["top1_share"] * r["rows"]:
            failures.append(f"{r['model']}: top-1 {r['top1_agree']}/{r['rows']}")
        if "segments_equal" in r and r["segments_equal"] < bounds["segments_share"] * r["rows"]:
            failures.append(f"{r['model']}: segments {r['segments_equal']}/{r['rows']}")
        if r.get("transcript_wer", 0.0) > bounds["wer"]:
            failures.append(f"{r['model']}: transcript WER {r['transcript_wer']:.3f} vs CPU")
        if r.get("token_counts_equal") is False:
            failures.append(f"{r['model']}: token counts differ")
    return failures


def print_parity(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(
        f"{'model':<32} {'prec':<5} {'provider':<9} {'max|diff|':>10} {'min cos':>9} "
        f"{'top-1':>7} {'tokens':>6}"
    )
    for r in rows:
        provider = (r.get("providers") or ["?"])[0].replace("ExecutionProvider", "")
        cos = f"{r['min_cosine']:.6f}" if "min_cosine" in r else "-"
        if "top1_agree" in r:
            top1 = f"{r['top1_agree']}/{r['rows']}"
        elif "segments_equal" in r:
            top1 = f"{r['segments_equal']}/{r['rows']}s"
        elif "transcript_wer" in r:
            top1 = f"w{r['transcript_wer']:.2f}"  # worst transcript's WER against the CPU
        else:
            top1 = "-"
        tokens = {True: "same", False: "DIFF"}.get(r.get("token_counts_equal"), "-")
        print(
            f"{r['model']:<32} {r.get('precision') or '?':<5} {provider:<9} "
            f"{r.get('max_abs_diff', 0.0):>10.2e} {cos:>9} {top1:>7} {tokens:>6}"
        )
        for note in r.get("notes") or []:
            print(f"{'':<32} note: {note}")


LLM_PROMPTS = [
    "What is the capital of France?",
    "Write a Python function that reverses a string.",
    "List three prime numbers.",
]


def _stream_once(url: str, model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """One streamed greedy chat generation: its text, token counts and timings."""
    body = {
        "task": "text-generation",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    started = time.perf_counter()
    first: float | None = None
    pieces: list[dict[str, Any]] = []
    headers = {HEADER: model, "Accept": "application/jsonlines"}
    with httpx.stream(
        "POST", f"{url}/invocations", json=body, headers=headers, timeout=300
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line:
                pieces.append(json.loads(line))
                first = first or time.perf_counter() - started
    if "error" in pieces[-1]:
        raise RuntimeError(f"stream failed: {pieces[-1]['error']}")
    return {
        "text": "".join(p["text"] for p in pieces),
        "completion_tokens": pieces[-1]["completion_tokens"],
        "pieces": len(pieces),
        "first_s": first or 0.0,
        "seconds": time.perf_counter() - started,
    }


def llm_step(target: str, registry_path: Path, quick: bool) -> list[dict[str, Any]]:
    """Each language model on ``target``: greedy identity against the CPU runner, then
    throughput at 1/8/32 concurrent streams."""
    registry = ModelRegistry(FolderStore(registry_path))
    models = [n for n in registry.names() if registry.resolve(n).task == "text-generation"]
    reference = LocalOnnxBackend(registry)
    identity_tokens, load_tokens = (12, 8) if quick else (48, 64)
    rows: list[dict[str, Any]] = []
    for name in models:
        manifest = registry.resolve(name)
        model = f"{name}/{manifest.version}"
        env = {
            "AIMAAS_REGISTRY": str(registry_path),
            "AIMAAS_GPU_PRELOAD": model,
            "AIMAAS_GPU_METRICS_S": "0",
            "AIMAAS_GPU_MAX_GENERATIONS": "32",
            "AIMAAS_GPU_REQUIRE": "0" if target == "cpu" else "1",
        }
        row: dict[str, Any] = {"model": model, "identity": [], "load": []}
        with running_server(env, target=target, timeout_s=300) as url:
            row["providers"] = httpx.get(f"{url}/metrics", timeout=30).json()["models"][
                manifest.model_id
            ]["providers"]
            for prompt in LLM_PROMPTS:
                request = wire.GenerationRequest(
                    messages=[wire.ChatMessage(role="user", content=prompt)],
                    max_tokens=identity_tokens,
                    temperature=0,
                )
                want = reference.invoke(manifest, request)
                got = _stream_once(url, model, prompt, identity_tokens)
                row["identity"].append(
                    {
                        "prompt": prompt,
                        "identical": got["text"] == want.text
                        and got["completion_tokens"] == want.completion_tokens,
                        "tokens": got["completion_tokens"],
                        "cpu_text": want.text,
                        "target_text": got["text"],
                    }
                )
            for streams in (1, 8, 32):
                prompts = [LLM_PROMPTS[i % len(LLM_PROMPTS)] for i in range(streams)]
                started = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(streams) as pool:
                    jobs = [pool.submit(_stream_once, url, model, p, load_tokens) for p in prompts]
                    results = [job.result() for job in jobs]
                wall = time.perf_counter() - started
                tokens = sum(r["completion_tokens"] for r in results)
                row["load"].append(
                    {
                        "streams": streams,
                        "tokens": tokens,
                        "seconds": round(wall, 3),
                        "tokens_per_s": round(tokens / wall, 1),
                        "per_stream_tokens_per_s": round(
                            float(
                                np.median([r["completion_tokens"] / r["seconds"] for r in results])
                            ),
                            1,
                        ),
                        "first_piece_ms_p50": round(
                            1000 * float(np.median([r["first_s"] for r in results])), 1
                        ),
                    }
                )
        rows.append(row)
    reference.close()
    return rows


def print_llm(target: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(f"\nLanguage model {row['model']} on {target} ({', '.join(row['providers'])})")
        same = sum(i["identical"] for i in row["identity"])
        print(f"greedy answers identical to the CPU runner: {same}/{len(row['identity'])}")
        for item in row["identity"]:
            if not item["identical"]:
                print(f"  differs: {item['prompt']!r}: {item['cpu_text']!r}")
                print(f"           vs {item['target_text']!r}")
        head = ("streams", "tokens", "seconds", "tok/s", "tok/s/stream", "first ms")
        print(" ".join(f"{h:>{w}}" for h, w in zip(head, (8, 7, 8, 8, 13, 9), strict=True)))
        for load in row["load"]:
            print(
                f"{load['streams']:>8} {load['tokens']:>7} {load['seconds']:>8} "
                f"{load['tokens_per_s']:>8} {load['per_stream_tokens_per_s']:>13} "
                f"{load['first_piece_ms_p50']:>9}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cuda", choices=["cuda", "tensorrt", "cpu"])
    parser.add_argument(
        "--registry",
        type=Path,
        default=Path(os.environ.get("AIMAAS_REGISTRY", REPO / "build/registry")),
    )
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/gpu_check.json")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer clients and requests")
    args = parser.parse_args(argv)

    started = time.monotonic()
    report: dict[str, Any] = {"target": args.target, "providers": providers_step(args.target)}
    if args.target != "cpu" and "CUDAExecutionProvider" not in report["providers"]["available"]:
        print("CUDAExecutionProvider is not available: is onnxruntime-gpu installed?")
        return 2

    report["parity_fp32"] = parity_step(args.target, args.registry, "off")
    print_parity(
        f"Parity on {args.target} (fp32) against the CPU Lambda path", report["parity_fp32"]
    )
    failures = parity_failures(report["parity_fp32"], "off")
    if args.target != "cpu":  # fp16 and IO binding exist on CUDA only
        report["parity_fp16"] = parity_step(args.target, args.registry, "force")
        print_parity(
            f"Parity on {args.target} with fp16 where its gate passes", report["parity_fp16"]
        )
        failures += [f"fp16 {f}" for f in parity_failures(report["parity_fp16"], "force")]
    report["llm"] = llm_step(args.target, args.registry, args.quick)
    print_llm(args.target, report["llm"])
    failures += [
        f"{row['model']} greedy differs from CPU: {item['prompt']!r}"
        for row in report["llm"]
        for item in row["identity"]
        if not item["identical"]
    ]
    report["parity_failures"] = failures
    for failure in failures:
        print(f"PARITY FAILED: {failure}")
    code = 0

    if not args.skip_bench:
        bench_json = args.json.with_name(args.json.stem + "_batching.json")
        clients = ["1", "8", "32"] if args.quick else ["1", "8", "32", "64"]
        bench_args = [
            "--target",
            args.target,
            "--registry",
            str(args.registry),
            "--batch-sizes",
            "1",
            "8",
            "32",
            "--clients",
            *clients,
            "--rounds",
            "1",
            "--json",
            str(bench_json),
        ]
        if args.quick:
            bench_args += ["--per-client", "6", "--min-requests", "30"]
        code |= bench.main(bench_args)
        report["batching"] = json.loads(bench_json.read_text())
        if args.target != "cpu":
            # The same load in float16 (kept only where its parity gate passes), batched or not.
            fp16_json = args.json.with_name(args.json.stem + "_batching_fp16.json")
            fp16_args = [
                *bench_args[: bench_args.index("--batch-sizes")],
                "--batch-sizes",
                "1",
                "32",
                "--clients",
                "1",
                "32",
                "--rounds",
                "1",
                "--fp16",
                "force",
                "--no-engine",
                "--json",
                str(fp16_json),
            ]
            if args.quick:
                fp16_args += ["--per-client", "6", "--min-requests", "30"]
            code |= bench.main(fp16_args)
            report["batching_fp16"] = json.loads(fp16_json.read_text())
        if code:
            print("some benchmark requests failed")
    report["seconds"] = round(time.monotonic() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nGPU check finished in {report['seconds']} s; JSON: {args.json}")
    return 1 if failures or code else 0


if __name__ == "__main__":
    sys.exit(main())
