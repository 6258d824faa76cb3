"""Synthetic inputs the tests send: WAV tones and small images, made in memory."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image


def wav(
    seconds: float = 1.0,
    rate: int = 16000,
    channels: int = 1,
    bits: int = 16,
    freq: float = 440.0,
    declared_frames: int | None = None,
) -> bytes:
    """A PCM WAV file of a tone.

    Parameters
    ----------
    seconds, rate, channels, bits, freq
        Length, sample rate, channel count, sample width (8 or 16) and pitch of the tone.
    declared_frames
        When given, the header claims this many frames whatever follows (a lying header).
    """
    frames = int(seconds * rate)
    t = np.arange(frames) / rate
    tone = 0.3 * np.sin(2 * np.pi * freq * t)
    samples = (tone * 127 + 128).astype(np.uint8) if bits == 8 else (tone * 32767).astype("<i2")
    data = np.repeat(samples[:, None], channels, axis=1).tobytes()
    width = bits // 8
    size = len(data) if declared_frames is None else declared_frames * width * channels
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, channels, rate,
        rate * channels * width, channels * width, bits, b"data", size,
    )  # fmt: skip
    return header + data


def image_bytes(mode: str = "RGB", size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    """A small gradient image in ``mode`` (RGB, RGBA, CMYK or I;16) encoded as ``fmt``."""
    w, h = size
    base = np.linspace(0, 255, w * h, dtype=np.float64).reshape(h, w)
    if mode == "I;16":
        image = Image.fromarray((base * 257).astype(np.uint16))
    elif mode == "CMYK":
        image = Image.fromarray(np.stack([base] * 3, axis=-1).astype(np.uint8)).convert("CMYK")
    elif mode == "RGBA":
        rgb = np.stack([base, base[::-1], base], axis=-1).astype(np.uint8)
        alpha = np.full((h, w, 1), 128, dtype=np.uint8)
        image = Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA")
    else:
        image = Image.fromarray(np.stack([base, base[::-1], base], axis=-1).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()
