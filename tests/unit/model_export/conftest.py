"""A tiny exporter that writes a real (trivial) ONNX graph, for registry and publish tests.

The class is handed to tests by the ``tiny`` fixture (sibling modules are not importable in
pytest's importlib mode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import onnx
import pytest
from onnx import TensorProto, helper

from aimaas.manifest import (
    ExporterInfo,
    ImagePreprocessing,
    ModelManifest,
    ParityReport,
    Source,
    file_ref,
)
from model_export import gates
from model_export.base import BuildContext, ModelExporter, utc_now


def identity_onnx(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


class TinyExporter(ModelExporter):
    """Writes an identity graph; ``metric`` is what its gate measures (limit 1.0)."""

    name = "tiny-model"
    calls: ClassVar[list[str]] = []

    def __init__(self, metric: float = 0.0, setting: str = "a") -> None:
        self.metric = metric
        self.setting = setting

    def config(self) -> dict[str, Any]:
        return {"setting": self.setting}

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        type(self).calls.append(self.name)
        graph = identity_onnx(out_dir / "model.onnx")
        (out_dir / "labels.txt").write_text("a\nb\n")
        parity: ParityReport = gates.enforce(
            self.name,
            {"max_abs_diff": self.metric},
            {"max_abs_diff": 1.0},
            reference="identity",
            samples=1,
        )
        return ModelManifest(
            name=self.name,
            version=self.version,
            task="image-classification",
            description="test double",
            artifact=file_ref(graph),
            files=[file_ref(out_dir / "labels.txt")],
            inputs=[{"name": "x", "dtype": "float32", "shape": ["batch", 2]}],
            outputs=[{"name": "y", "dtype": "float32", "shape": ["batch", 2]}],
            preprocessing=ImagePreprocessing(resize=2, size=2, mean=[0, 0, 0], std=[1, 1, 1]),
            labels=["a", "b"],
            billing_unit="image",
            source=Source(package="none", package_version="0", licence="MIT", origin="test"),
            parity=parity,
            exporter=ExporterInfo(
                torch_version="-", onnx_opset=17, onnxruntime_version="-", exporter="onnx.helper"
            ),
            created_at=utc_now(),
        )


@pytest.fixture
def tiny() -> type[TinyExporter]:
    TinyExporter.calls.clear()
    return TinyExporter
