"""The model export pipeline: PyTorch weights in, verified ONNX plus a manifest out.

``python -m model_export build --all --registry build/registry`` exports every model, runs its
gate (ONNX must agree with PyTorch within stated tolerances, and quantised models must keep
their accuracy), and only then writes ``<registry>/<name>/<version>/``. Nothing outside this
package imports it, and only it imports torch.

Public face:

- :class:`~model_export.base.ModelExporter`: the base class of one model's exporter.
- :data:`~model_export.models.EXPORTERS`: model name to exporter factory.
- :func:`~model_export.registry.build_models`: build a set of models into a registry.
- :class:`~model_export.gates.GateError`: raised when a model fails its gate.
"""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "1.0.0"
