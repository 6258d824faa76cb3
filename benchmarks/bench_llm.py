"""Language model on CPU: time to first token and tokens/s at 1 and 8 concurrent streams.

Runs the served runner (ONNX Runtime GenAI) in process; every stream shares one model and the
process is held to ``--threads`` intra-op threads per stream. Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from aimaas.generation.runner import GenerationRunner
from aimaas.inference.wire import ChatMessage, GenerationRequest
from aimaas.manifest import ModelManifest
from aimaas_testing.paths import REGISTRY


def one_stream(runner: GenerationRunner, tokens: int) -> tuple[float, int, float]:
    """(seconds to the first text, completion tokens, total seconds) of one greedy stream."""
    request = GenerationRequest(
        messages=[ChatMessage(role="user", content="Count from 1 to 200, one per line.")],
        max_tokens=tokens,
        temperature=0.0,
    )
    started = time.perf_counter()
    first = None
    last = None
    for last in runner.stream(request):
        if first is None and last.text:
            first = time.perf_counter() - started
    assert last is not None
    return first or 0.0, last.completion_tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="qwen2-5-coder-0-5b-instruct")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    folder = sorted((REGISTRY / args.model).glob("*/manifest.json"))[-1].parent
    manifest = ModelManifest.model_validate_json((folder / "manifest.json").read_text())
    runner = GenerationRunner(manifest, folder, threads=args.threads)
    one_stream(runner, 4)  # warm-up
    print(f"| streams | TTFT median (s) | tokens/s per stream | tokens/s total |  ({args.model},"
          f" {args.threads} threads, {args.tokens} tokens)")
    print("|---|---|---|---|")
    for streams in (1, 8):
        started = time.perf_counter()
        with ThreadPoolExecutor(streams) as pool:
            runs = list(pool.map(lambda _: one_stream(runner, args.tokens), range(streams)))
        wall = time.perf_counter() - started
        ttft = statistics.median(r[0] for r in runs)
        per = statistics.median(r[1] / r[2] for r in runs)
        total = sum(r[1] for r in runs) / wall
        print(f"| {streams} | {ttft:.3f} | {per:.1f} | {total:.1f} |")


if __name__ == "__main__":
    main()
