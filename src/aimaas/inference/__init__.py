"""Inference: the task wire format (:mod:`.wire`) and the ONNX task runners (:mod:`.runners`).

The wire models are the contract between the API, the backends and the GPU server (see
:mod:`aimaas.inference.wire`). Importing this package does not import
ONNX Runtime (runners create sessions lazily).
"""

from aimaas.inference.wire import (
    REQUEST_ADAPTER,
    RESULT_ADAPTER,
    TARGET_MODEL_HEADER,
    AudioClassificationRequest,
    AudioClassificationResult,
    EmbeddingsRequest,
    EmbeddingsResult,
    ImageClassificationRequest,
    ImageClassificationResult,
    InferenceRequest,
    InferenceResult,
    LabelScore,
    Segment,
    TextClassificationRequest,
    TextClassificationResult,
    VadRequest,
    VadResult,
    batch_size,
)

__all__ = [
    "REQUEST_ADAPTER",
    "RESULT_ADAPTER",
    "TARGET_MODEL_HEADER",
    "AudioClassificationRequest",
    "AudioClassificationResult",
    "EmbeddingsRequest",
    "EmbeddingsResult",
    "ImageClassificationRequest",
    "ImageClassificationResult",
    "InferenceRequest",
    "InferenceResult",
    "LabelScore",
    "Segment",
    "TextClassificationRequest",
    "TextClassificationResult",
    "VadRequest",
    "VadResult",
    "batch_size",
]
