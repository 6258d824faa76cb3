"""Where a model runs: in process (ONNX Runtime), the GPU server over HTTP, or SageMaker.

Public face: :class:`InferenceBackend` (the port), :class:`LocalOnnxBackend`,
:class:`BackendRouter` (stage ``gpu_models`` -> GPU backend) and :func:`build_gpu_backend`
(``settings.gpu_backend`` -> backend via ``GPU_BACKENDS``: ``none``, ``http``, ``sagemaker``).
The HTTP and SageMaker backends are imported on demand (``aimaas.backends.http``,
``aimaas.backends.sagemaker``) so a CPU-only cold start never imports boto3 or urllib3 for them.
"""

from aimaas.backends.base import InferenceBackend, target_model
from aimaas.backends.local import LocalOnnxBackend
from aimaas.backends.router import (
    GPU_BACKENDS,
    BackendRouter,
    UnconfiguredGpuBackend,
    build_gpu_backend,
)

__all__ = [
    "GPU_BACKENDS",
    "BackendRouter",
    "InferenceBackend",
    "LocalOnnxBackend",
    "UnconfiguredGpuBackend",
    "build_gpu_backend",
    "target_model",
]
