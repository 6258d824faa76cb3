"""Preprocessing shared by the export gates (``model_export``) and serving.

One implementation per modality, so the numbers a model was verified with at export time are
the numbers it gets in production:

- :mod:`~aimaas.preprocess.text`: ``tokenizers`` batch encoding to int64 arrays.
- :mod:`~aimaas.preprocess.image`: safe PIL decoding, resize, centre crop, normalise (NCHW).
- :mod:`~aimaas.preprocess.audio`: WAV decoding, resampling to 16 kHz, log-mel features.

Every function raises :class:`aimaas.errors.InvalidInput` for input it cannot decode. Only
numpy, Pillow, soxr and tokenizers are used (no torch).
"""

from __future__ import annotations

from aimaas.preprocess.audio import (
    Audio,
    decode_wav,
    fit_clip,
    log_mel,
    resample,
    speech_segments,
    vad_windows,
    wav_to_features,
)
from aimaas.preprocess.image import decode_image, image_to_tensor, preprocess_images
from aimaas.preprocess.text import EncodedBatch, TextEncoder

__all__ = [
    "Audio",
    "EncodedBatch",
    "TextEncoder",
    "decode_image",
    "decode_wav",
    "fit_clip",
    "image_to_tensor",
    "log_mel",
    "preprocess_images",
    "resample",
    "speech_segments",
    "vad_windows",
    "wav_to_features",
]
