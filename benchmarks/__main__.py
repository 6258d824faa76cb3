"""``python -m benchmarks``: run every benchmark script, collect their JSON, draw the charts.

Each benchmark is a standalone script that writes its own JSON under ``benchmarks/results/``;
this runner starts them one after another as child processes (bounded by a timeout each),
gathers what they wrote into ``benchmarks/results/results.json`` with how each run ended, and
then calls :mod:`benchmarks.report` for the PNG charts. A script that is absent or fails is
recorded as such; the others still run, and the exit status says whether all succeeded.

Examples::

    python -m benchmarks                      # everything, full size
    python -m benchmarks --quick              # smaller runs (smoke)
    python -m benchmarks --only serving load --load-requests 10000
    python -m benchmarks --report-only        # redraw charts from results.json
    python -m benchmarks --collect-only       # gather earlier JSON outputs, then draw
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RESULTS_FILE = RESULTS / "results.json"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark script and where it writes its result.

    Attributes
    ----------
    name
        Key in ``results.json`` and in ``--only``/``--skip``.
    command
        Builds the argument list (after the interpreter) from the parsed options.
    output
        The JSON file the script writes.
    timeout_s
        Longest run allowed before it is stopped and recorded as timed out.
    """

    name: str
    command: Callable[[argparse.Namespace], list[str]]
    output: Path
    timeout_s: float = 1800.0


def _script(path: str, *extra: str, quick: Sequence[str] = ()) -> Callable[..., list[str]]:
    def build(args: argparse.Namespace) -> list[str]:
        return [str(REPO / "benchmarks" / path), *extra, *(quick if args.quick else ())]

    return build


def _load(args: argparse.Namespace) -> list[str]:
    requests = args.load_requests or (2000 if args.quick else 10_000)
    return [
        "-m",
        "tests.functional.pressure.load",
        "--requests",
        str(requests),
        "--concurrency",
        "32",
        "--json",
        str(RESULTS / "load.json"),
    ]


#: Every benchmark, in the order they run (name -> script, output). Others add theirs here.
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "models",
            _script("bench_models.py", quick=("--quick",)),
            RESULTS / "models.json",
        ),
        Benchmark(
            "serving",
            _script("bench_serving.py", quick=("--quick",)),
            RESULTS / "serving.json",
        ),
        Benchmark(
            "gpu_batching",
            _script("bench_gpu_batching.py"),
            RESULTS / "gpu_batching.json",
        ),
        Benchmark(
            "multilingual",
            _script("bench_multilingual.py", quick=("--quick",)),
            RESULTS / "multilingual.json",
        ),
        Benchmark(
            "speech",
            _script("bench_speech.py", quick=("--quick",)),
            RESULTS / "speech.json",
        ),
        Benchmark("load", _load, RESULTS / "load.json"),
        Benchmark(
            "classifiers",
            _script("bench_classifiers.py", quick=("--quick",)),
            RESULTS / "classifiers.json",
        ),
    )
}


def run_one(benchmark: Benchmark, args: argparse.Namespace) -> dict[str, Any]:
    """Run one benchmark as a child process; its status, duration and JSON result."""
    argv = benchmark.command(args)
    script = argv[0] if argv[0] != "-m" else None
    if script is not None and not Path(script).is_file():
        return {"status": "missing", "detail": f"{Path(script).name} is not in the repository"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), _pythonpath()]))}
    env.setdefault("AIMAAS_REGISTRY", str(REPO / "build" / "registry"))
    before = benchmark.output.stat().st_mtime if benchmark.output.is_file() else None
    started = time.monotonic()
    print(f"\n=== {benchmark.name}: {' '.join(argv)}", flush=True)
    try:
        completed = subprocess.run(
            [sys.executable, *argv], cwd=REPO, env=env, timeout=benchmark.timeout_s, check=False
        )
        status = "ok" if completed.returncode == 0 else f"failed (exit {completed.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {benchmark.timeout_s:.0f} s"
    seconds = round(time.monotonic() - started, 1)
    entry: dict[str, Any] = {"status": status, "seconds": seconds, "output": _rel(benchmark)}
    fresh = benchmark.output.is_file() and benchmark.output.stat().st_mtime != before
    if fresh:
        entry["result"] = json.loads(benchmark.output.read_text())
    elif status == "ok":
        entry["status"] = "failed (no result written)"
    return entry


def collect_one(benchmark: Benchmark, args: argparse.Namespace) -> dict[str, Any]:
    """The result a script wrote earlier, without running it."""
    if not benchmark.output.is_file():
        return {"status": "missing", "detail": f"no {_rel(benchmark)} yet"}
    written = datetime.fromtimestamp(benchmark.output.stat().st_mtime, UTC)
    return {
        "status": "ok",
        "collected_from": _rel(benchmark),
        "written_at": written.isoformat(timespec="seconds"),
        "result": json.loads(benchmark.output.read_text()),
    }


def _pythonpath() -> str:
    return os.environ.get("PYTHONPATH", "")


def _rel(benchmark: Benchmark) -> str:
    return benchmark.output.relative_to(REPO).as_posix()


def collect_previous(names: Sequence[str]) -> dict[str, Any]:
    """Entries of ``results.json`` for benchmarks not run now (kept, marked as earlier runs)."""
    if not RESULTS_FILE.is_file():
        return {}
    previous = json.loads(RESULTS_FILE.read_text()).get("benchmarks", {})
    return {name: entry for name, entry in previous.items() if name not in names}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--skip", nargs="+", choices=sorted(BENCHMARKS), default=())
    parser.add_argument(
        "--load-requests", type=int, default=None, help="requests of the load run (10,000)"
    )
    parser.add_argument("--report-only", action="store_true", help="only redraw the charts")
    parser.add_argument(
        "--collect-only",
        action="store_true",
        help="run nothing: gather the JSON files the scripts wrote earlier, then draw",
    )
    args = parser.parse_args(argv)

    from benchmarks import report

    if not args.report_only:
        names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
        run = collect_one if args.collect_only else run_one
        entries = {name: run(BENCHMARKS[name], args) for name in names}
        document = {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": {
                "machine": platform.machine(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2),
            },
            "quick": args.quick,
            "benchmarks": {**collect_previous(names), **entries},
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        RESULTS_FILE.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {RESULTS_FILE.relative_to(REPO)}")
    charts = report.draw(RESULTS_FILE, RESULTS)
    for chart in charts:
        print(f"wrote {chart.relative_to(REPO)}")
    document = json.loads(RESULTS_FILE.read_text())
    statuses = {name: e["status"] for name, e in document["benchmarks"].items()}
    print("\n" + "\n".join(f"  {name:<14} {status}" for name, status in statuses.items()))
    return 0 if all(s in ("ok", "missing") for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
