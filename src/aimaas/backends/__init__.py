"""Where a model runs: in process (ONNX Runtime), the GPU server over HTTP, or SageMaker.

Public face: :class:`InferenceBackend` (the port), :class:`LocalOnnxBackend`,
:class:`BackendRouter` (stage ``gpu_models`` -> GPU backend);
:func:`aimaas.wiring.build_gpu_backend` picks the GPU backend by configuration (``none``,
``http``, ``sagemaker``).
The HTTP and SageMaker backends are imported on demand (``aimaas.backends.http``,
``aimaas.backends.sagemaker``) so a CPU-only cold start never imports boto3 or urllib3 for them.
"""

from aimaas.backends.base import InferenceBackend, target_model
from aimaas.backends.local import LocalOnnxBackend
from aimaas.backends.router import BackendRouter, UnconfiguredGpuBackend

__all__ = [
    "BackendRouter",
    "InferenceBackend",
    "LocalOnnxBackend",
    "UnconfiguredGpuBackend",
    "target_model",
]
