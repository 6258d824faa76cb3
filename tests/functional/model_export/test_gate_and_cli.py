"""The gate is real: a corrupted export fails the build and writes nothing; the CLI skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from aimaas.manifest import ModelManifest
from model_export import onnx_tools
from model_export.base import BuildContext
from model_export.models import EXPORTERS
from model_export.registry import build_one

ROOT = Path(__file__).resolve().parents[3]


def _corrupting(original):  # type: ignore[no-untyped-def]
    """Wrap torch_export so the written graph has one weight nudged (a broken exporter)."""

    def export(*args, **kwargs):  # type: ignore[no-untyped-def]
        path = original(*args, **kwargs)
        model = onnx.load(str(path))
        weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        array = numpy_helper.to_array(weight).copy()
        array.flat[: array.size // 50] += 0.05  # a small drift in 2% of one weight tensor
        weight.CopyFrom(numpy_helper.from_array(array, weight.name))
        onnx.save(model, str(path))
        return path

    return export


@pytest.mark.slow
def test_perturbed_weight_fails_the_gate_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "registry"
    ctx = BuildContext(cache_dir=tmp_path / "cache")
    monkeypatch.setattr(onnx_tools, "torch_export", _corrupting(onnx_tools.torch_export))
    result = build_one(EXPORTERS["mobilenet-v2"](), registry, ctx, force=True)
    assert result.status == "failed", result
    assert "gate failed" in (result.error or "") and "max_logit_diff" in (result.error or "")
    assert not (registry / "mobilenet-v2").exists()
    assert not (registry / ".staging").exists()
    monkeypatch.undo()
    good = build_one(EXPORTERS["mobilenet-v2"](), registry, ctx)
    assert good.status == "built" and good.manifest is not None
    assert good.manifest.parity.metrics["max_logit_diff"] < 1e-3


@pytest.mark.slow
def test_cli_builds_then_skips(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    command = [
        sys.executable,
        "-m",
        "model_export",
        "build",
        "silero-vad",
        "--registry",
        str(registry),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
        "COLUMNS": "200",
    }
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    manifest = ModelManifest.model_validate_json(
        (registry / "silero-vad" / "1.0.0" / "manifest.json").read_text()
    )
    assert manifest.task == "voice-activity-detection" and manifest.parity.passed
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "skipped" in second.stdout + second.stderr
    bad = subprocess.run(
        [*command[:4], "no-such-model", *command[5:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode != 0 and "unknown models" in bad.stderr
