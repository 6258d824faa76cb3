"""ONNX helpers shared by the exporters: export, sessions, graph specs, fusion, quantisation."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from aimaas.manifest import ExporterInfo, TensorSpec

OPSET = 17
_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
}


def torch_export(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    opset: int = OPSET,
) -> Path:
    """Export ``module`` with the TorchScript-based exporter (``dynamo=False``).

    The legacy exporter is used on purpose: ONNX Runtime's transformer optimiser fully fuses
    BERT attention only in the graphs it produces, and it names dynamic axes as asked.
    """
    import torch

    module.eval()
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path


def session(path: Path | str, threads: int = 2) -> ort.InferenceSession:
    """A CPU ONNX Runtime session with ``threads`` intra-op threads and all optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``sess`` with only the inputs the graph declares."""
    wanted = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in wanted})


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor = value.type.tensor_type
    shape: list[int | str] = [
        dim.dim_param if dim.dim_param else int(dim.dim_value) for dim in tensor.shape.dim
    ]
    return TensorSpec(name=value.name, dtype=_DTYPES[tensor.elem_type], shape=shape)


def graph_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs and outputs as manifest tensor specs (initialisers excluded)."""
    model = onnx.load(str(path), load_external_data=False)
    initialisers = {init.name for init in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in initialisers]
    return inputs, [_spec(v) for v in model.graph.output]


def op_counts(path: Path) -> dict[str, int]:
    """How many nodes of each op type the graph has (to report fusion)."""
    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def set_dims(path: Path, name: str, dims: Mapping[int, int | str]) -> None:
    """Name or fix axes of a graph input/output the exporter left anonymous (e.g. ``Div_dim_1``)."""
    model = onnx.load(str(path))
    values = [*model.graph.input, *model.graph.output]
    value = next((v for v in values if v.name == name), None)
    if value is None:
        raise KeyError(f"{path.name} has no input or output {name!r}")
    for axis, size in dims.items():
        dim = value.type.tensor_type.shape.dim[axis]
        if isinstance(size, int):
            dim.dim_value = size
        else:
            dim.dim_param = size
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def append_linear_head(
    source: Path,
    target: Path,
    weight: np.ndarray,
    bias: np.ndarray,
    *,
    input_name: str,
    output_name: str,
) -> Path:
    """Write ``source`` with ``output = input @ weight.T + bias`` after its output ``input_name``.

    Classifiers on a shared encoder reuse its exported (and quantised) graph this way instead
    of exporting and quantising the whole network again; the head stays float32.
    """
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    old = next((o for o in graph.output if o.name == input_name), None)
    if old is None:
        raise KeyError(f"{source.name} has no output {input_name!r}")
    batch = old.type.tensor_type.shape.dim[0]
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.ascontiguousarray(weight.T, np.float32), "head_weight_t"),
            numpy_helper.from_array(np.asarray(bias, np.float32), "head_bias"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("MatMul", [input_name, "head_weight_t"], ["head_matmul"]),
            helper.make_node("Add", ["head_matmul", "head_bias"], [output_name]),
        ]
    )
    graph.output.remove(old)
    graph.output.append(
        helper.make_tensor_value_info(
            output_name,
            onnx.TensorProto.FLOAT,
            [batch.dim_param or batch.dim_value, int(weight.shape[0])],
        )
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


def quantize_int8(source: Path, target: Path, *, per_channel: bool = True) -> Path:
    """Dynamic int8 quantisation of weights (activations quantised at run time).

    Per-channel scales matter: per-tensor scales cost MiniLM about 0.05 of cosine similarity.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser drops shape-inference scratch files (uuid-named .data, *_temp.onnx) into
    # the working directory: give it a throwaway one so builds leave the checkout clean.
    source, target = source.resolve(), target.resolve()
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        quantize_dynamic(
            str(source),
            str(target),
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return target


def exporter_info(exporter: str, opset: int = OPSET) -> ExporterInfo:
    """Versions of the tools that made an artifact, for the manifest."""
    import torch

    return ExporterInfo(
        torch_version=torch.__version__,
        onnx_opset=opset,
        onnxruntime_version=ort.__version__,
        exporter=exporter,
    )
