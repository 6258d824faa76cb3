"""Charts of ``benchmarks/results/results.json`` (matplotlib, PNG).

Three charts, each drawn only from numbers a benchmark measured (a chart whose data is absent
is skipped and says so, it is never filled in):

- ``latency_by_batch.png``: latency by batch size per model, one line per runtime
  (PyTorch, ONNX fp32, ONNX int8), from the ``models`` benchmark;
- ``throughput_vs_concurrency.png``: requests/s against concurrent clients, one line per
  measured series (loopback HTTP server, GPU-server batching on and off, the mixed load run);
- ``cold_start.png``: seconds from a fresh process to the first prediction, ONNX handler
  against PyTorch eager, from the ``serving`` benchmark.

The benchmark scripts are written by different people, so the readers below look for rows by
their keys (``batch_size`` with a latency, ``clients`` with a throughput) wherever they sit in
a result, rather than by one fixed layout.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LATENCY_KEYS = ("p50_ms", "median_ms", "latency_ms", "mean_ms")
THROUGHPUT_KEYS = ("req_per_s", "throughput_rps", "requests_per_s", "rps")
SERIES_KEYS = ("runtime", "engine", "backend", "variant", "precision", "format", "provider")


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict]]:
    """Every dict inside ``node`` with the keys leading to it."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, str(index)))


def _first(row: dict, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if isinstance(row.get(key), int | float):
            return row[key]
    return None


def latency_rows(result: Any) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """model -> series -> [(batch size, latency ms)] from any rows with ``batch_size``.

    Two layouts are read: rows under ``{"model": m, "batches": {"<size>": {"<series>": row}}}``
    (``bench_models.py``), and rows that carry ``batch_size`` themselves. Such a row names its
    model with ``model`` and its series with one of :data:`SERIES_KEYS`; missing names are taken
    from the enclosing keys (``{"mobilenet-v2": {"onnx-int8": [...]}}``).
    """
    found: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for path, row in _walk(result):
        latency = _first(row, LATENCY_KEYS)
        if latency is None:
            continue
        if len(path) >= 3 and path[-3] == "batches" and path[-2].isdigit():
            # {"model": m, "batches": {"<size>": {"<series>": row}}} (bench_models.py)
            owner = _lookup(result, path[:-3])
            model = owner.get("model") if isinstance(owner, dict) else None
            found[str(model or "model")][path[-1]].append((int(path[-2]), float(latency)))
            continue
        batch = row.get("batch_size")
        if not isinstance(batch, int):
            continue
        names = [p for p in path if not p.isdigit()]
        model = str(row.get("model") or (names[-2] if len(names) >= 2 else "model"))
        series = next((str(row[k]) for k in SERIES_KEYS if row.get(k)), None)
        series = series or (names[-1] if names else "latency")
        found[model][series].append((batch, float(latency)))
    return {m: {s: sorted(v) for s, v in series.items()} for m, series in found.items()}


def throughput_rows(name: str, result: Any) -> dict[str, list[tuple[int, float]]]:
    """series -> [(clients, requests/s)] from any rows with ``clients`` and a throughput."""
    found: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for path, row in _walk(result):
        clients, rate = row.get("clients"), _first(row, THROUGHPUT_KEYS)
        if not isinstance(clients, int) or rate is None:
            continue
        # Rows of one run share the dict above their list (e.g. runs[i] of a batching setting).
        parent = _lookup(result, path[:-2]) if len(path) >= 2 else None
        label = name
        if isinstance(parent, dict) and "max_batch_size" in parent:
            size = parent["max_batch_size"]
            # Sibling lists of runs are different set-ups ("runs" over HTTP, "engine_runs" in
            # process): one series each, or their points zigzag along one line.
            setup = "" if path[0] == "runs" else f"{path[0].removesuffix('_runs')}, "
            setting = "batching off" if size == 1 else f"max batch {size}"
            label = f"{name} ({setup}{setting})"
        found[label].append((clients, float(rate)))
    if not found and isinstance(result, dict):  # the load run: one level, one summary
        concurrency, rate = result.get("concurrency"), _first(result, ("throughput_rps",))
        if isinstance(concurrency, int) and rate is not None:
            found[f"{name} (mixed tasks)"].append((concurrency, float(rate)))
    return {label: sorted(points) for label, points in found.items()}


def _lookup(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        node = node[int(key)] if isinstance(node, list) else node.get(key)
    return node


def cold_start_bars(result: Any) -> dict[str, float]:
    """label -> seconds from spawn to first prediction, from any ``cold_start`` section."""
    bars: dict[str, float] = {}
    for path, row in _walk(result):
        if "cold_start" not in path:
            continue
        seconds = row.get("spawn_to_first_prediction_s")
        if isinstance(seconds, int | float) and path:
            bars[path[-1]] = float(seconds)
    return bars


def draw(results_file: Path, out_dir: Path) -> list[Path]:
    """Draw every chart whose data is in ``results_file``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # no display in CI
    import matplotlib.pyplot as plt

    document = json.loads(results_file.read_text())
    results = {
        name: entry["result"]
        for name, entry in document.get("benchmarks", {}).items()
        if "result" in entry
    }
    host = document.get("host", {})
    caption = (
        f"{host.get('cpus', '?')} CPUs, {host.get('machine', '')}, Python "
        f"{host.get('python', '')}, load avg {host.get('load_average_1m', '?')}"
        f" ({document.get('generated_at', '')})"
    )
    written: list[Path] = []

    latency = latency_rows(results.get("models", {}))
    if latency:
        models = sorted(latency)
        columns = min(3, len(models))
        rows = -(-len(models) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.8 * rows), squeeze=False)
        # One colour per runtime across panels, so PyTorch/fp32/int8 read the same everywhere.
        runtimes = sorted({series for model in models for series in latency[model]})
        colours = {name: f"C{index}" for index, name in enumerate(runtimes)}
        for ax, model in zip(axes.flat, models, strict=False):
            for series, points in sorted(latency[model].items()):
                ax.plot(*zip(*points, strict=True), marker="o", label=series, color=colours[series])
            ax.set(title=model, xlabel="batch size", ylabel="latency (ms, log)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")  # batch 1 and batch 32 differ by orders of magnitude
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(models) :]:
            ax.axis("off")
        fig.suptitle("Latency by batch size: PyTorch vs ONNX fp32 vs ONNX int8")
        written.append(_save(fig, out_dir / "latency_by_batch.png", caption))
    else:
        print("latency_by_batch.png: no 'models' result with batch_size rows; not drawn")

    lines: dict[str, list[tuple[int, float]]] = {}
    for name in ("serving", "gpu_batching", "load"):
        lines.update(throughput_rows(name, results.get(name, {})))
    if lines:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, points in sorted(lines.items()):
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
        ax.set(
            xlabel="concurrent clients", ylabel="requests / s", title="Throughput vs concurrency"
        )
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, out_dir / "throughput_vs_concurrency.png", caption))
    else:
        print("throughput_vs_concurrency.png: no throughput rows; not drawn")

    bars = cold_start_bars(results.get("serving", {}))
    if bars:
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = list(bars)
        ax.bar(labels, [bars[k] for k in labels], color=["tab:blue", "tab:orange"][: len(labels)])
        for index, label in enumerate(labels):
            ax.annotate(f"{bars[label]:.2f} s", (index, bars[label]), ha="center", va="bottom")
        ax.set(ylabel="seconds, spawn to first prediction", title="Cold start")
        written.append(_save(fig, out_dir / "cold_start.png", caption))
    else:
        print("cold_start.png: no cold_start section in the 'serving' result; not drawn")
    return written


def _save(fig: Any, path: Path, caption: str) -> Path:
    fig.text(0.01, 0.01, caption, fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
