"""The benchmark report finds rows by their keys wherever they sit, and draws only what exists."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import report

MODELS = {
    "models": [
        {"model": "mobilenet-v2", "runtime": "pytorch", "batch_size": 1, "p50_ms": 20.0},
        {"model": "mobilenet-v2", "runtime": "pytorch", "batch_size": 8, "p50_ms": 90.0},
        {"model": "mobilenet-v2", "runtime": "onnx-int8", "batch_size": 8, "p50_ms": 30.0},
        {"model": "mobilenet-v2", "runtime": "onnx-int8", "batch_size": 1, "p50_ms": 6.0},
    ],
    # Nested by name instead of fields: the enclosing keys name model and series.
    "all-minilm-l6-v2": {"onnx-fp32": [{"batch_size": 4, "median_ms": 12.5}]},
}
GPU = {
    "runs": [
        {"max_batch_size": 1, "levels": [{"clients": 8, "throughput_rps": 20.0}]},
        {"max_batch_size": 32, "levels": [{"clients": 8, "throughput_rps": 35.0}]},
    ]
}
SERVING = {
    "http_throughput": {"levels": [{"clients": 1, "req_per_s": 30.0}]},
    "cold_start": {
        "onnx_handler": {"spawn_to_first_prediction_s": 0.7},
        "pytorch_eager_fp32": {"spawn_to_first_prediction_s": 4.2},
    },
}
LOAD = {"concurrency": 32, "throughput_rps": 18.5, "requests": 2000}


def test_latency_rows_of_the_models_benchmark_layout() -> None:
    result = {
        "results": [
            {
                "model": "all-minilm-l6-v2",
                "batches": {
                    "1": {"pytorch-eager": {"median_ms": 9.0}, "onnx-int8": {"median_ms": 1.5}},
                    "32": {"pytorch-eager": {"median_ms": 80.0}, "onnx-int8": {"median_ms": 20.0}},
                },
            }
        ]
    }
    rows = report.latency_rows(result)
    assert rows == {
        "all-minilm-l6-v2": {
            "pytorch-eager": [(1, 9.0), (32, 80.0)],
            "onnx-int8": [(1, 1.5), (32, 20.0)],
        }
    }


def test_latency_rows_by_fields_and_by_enclosing_keys() -> None:
    rows = report.latency_rows(MODELS)
    assert rows["mobilenet-v2"]["pytorch"] == [(1, 20.0), (8, 90.0)]
    assert rows["mobilenet-v2"]["onnx-int8"] == [(1, 6.0), (8, 30.0)]
    assert rows["all-minilm-l6-v2"]["onnx-fp32"] == [(4, 12.5)]


def test_throughput_series_per_batching_setting_and_load_summary() -> None:
    assert report.throughput_rows("gpu", GPU) == {
        "gpu (batching off)": [(8, 20.0)],
        "gpu (max batch 32)": [(8, 35.0)],
    }
    assert report.throughput_rows("serving", SERVING) == {"serving": [(1, 30.0)]}
    assert report.throughput_rows("load", LOAD) == {"load (mixed tasks)": [(32, 18.5)]}


def test_cold_start_bars() -> None:
    assert report.cold_start_bars(SERVING) == {"onnx_handler": 0.7, "pytorch_eager_fp32": 4.2}


def test_draw_writes_only_charts_with_data(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    document = {
        "host": {"cpus": 2},
        "benchmarks": {
            "serving": {"status": "ok", "result": SERVING},
            "gpu_batching": {"status": "ok", "result": GPU},
            "models": {"status": "missing"},
        },
    }
    results.write_text(json.dumps(document))
    written = report.draw(results, tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["cold_start.png", "throughput_vs_concurrency.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document["benchmarks"]["models"] = {"status": "ok", "result": MODELS}
    results.write_text(json.dumps(document))
    assert "latency_by_batch.png" in {p.name for p in report.draw(results, tmp_path)}
