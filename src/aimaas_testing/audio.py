"""Audio files for tests: real speech in every container customers send, and hostile files.

Encoding uses PyAV (the same FFmpeg build the service decodes with), so no ``ffmpeg`` binary is
needed. Speech is ``beckett.wav`` (10 s of a person reading, MIT) from ``useful-moonshine-onnx``.
"""

from __future__ import annotations

import io
import struct
from importlib import metadata
from pathlib import Path

import numpy as np

#: (container format, codec, file suffix) of each upload container of the issue.
CONTAINERS = {
    "mp3": ("mp3", "libmp3lame", ".mp3"),
    "flac": ("flac", "flac", ".flac"),
    "ogg-opus": ("ogg", "libopus", ".ogg"),
    "m4a-aac": ("ipod", "aac", ".m4a"),
    "webm-opus": ("webm", "libopus", ".webm"),
}
BECKETT_TEXT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."


def beckett_path() -> Path:
    """Path of ``beckett.wav`` (16 kHz mono 16-bit)."""
    dist = metadata.distribution("useful-moonshine-onnx")
    for entry in dist.files or []:
        if entry.name == "beckett.wav":
            return Path(str(dist.locate_file(entry)))
    raise FileNotFoundError("beckett.wav")


def beckett() -> tuple[np.ndarray, int]:
    """``beckett.wav`` as float32 samples and its rate."""
    import wave

    with wave.open(str(beckett_path())) as handle:
        rate = handle.getframerate()
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0, rate


def wav(samples: np.ndarray, rate: int, *, width: int = 2, channels: int = 1) -> bytes:
    """A PCM WAV file (``width`` 1, 2 or 3 bytes, or 4 for float32), channels duplicated."""
    data = np.repeat(np.asarray(samples, dtype=np.float32)[:, None], channels, axis=1).reshape(-1)
    if width == 4:
        return _riff(3, channels, rate, 4, data.astype("<f4").tobytes())
    if width == 1:  # 8-bit WAV is unsigned
        return _riff(
            1, channels, rate, 1, (data * 127 + 128).clip(0, 255).astype(np.uint8).tobytes()
        )
    ints = (data * (2 ** (8 * width - 1) - 1)).astype("<i4")
    # Little-endian: the low ``width`` bytes of each 32-bit integer.
    body = ints.view(np.uint8).reshape(-1, 4)[:, :width].tobytes()
    return _riff(1, channels, rate, width, body)


def _riff(
    fmt: int, channels: int, rate: int, width: int, body: bytes, declared: int | None = None
) -> bytes:
    """A RIFF/WAVE file whose header declares ``declared`` data bytes (default: the truth)."""
    declared = len(body) if declared is None else declared
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        min(36 + declared, 0xFFFFFFFF),
        b"WAVE",
        b"fmt ",
        16,
        fmt,
        channels,
        rate,
        rate * channels * width,
        channels * width,
        8 * width,
        b"data",
        min(declared, 0xFFFFFFFF),
    )
    return header + body


def resampled(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    import soxr

    return soxr.resample(samples, rate, target).astype(np.float32)


def encode(samples: np.ndarray, rate: int, container: str, *, channels: int = 1) -> bytes:
    """``samples`` encoded in one of :data:`CONTAINERS` (resampled where the codec needs)."""
    import av

    fmt, codec, _ = CONTAINERS[container]
    out_rate = 48000 if codec == "libopus" else rate
    if out_rate != rate:
        samples = resampled(samples, rate, out_rate)
    layout = "stereo" if channels == 2 else "mono"
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as box:
        stream = box.add_stream(codec, rate=out_rate, layout=layout)
        planar = np.repeat(np.asarray(samples, dtype=np.float32)[None, :], channels, axis=0)
        frame_size = stream.codec_context.frame_size or 1024
        pts = 0
        for start in range(0, planar.shape[1], frame_size):
            chunk = np.ascontiguousarray(planar[:, start : start + frame_size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = out_rate
            frame.pts = pts
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return buffer.getvalue()


# ---- hostile files ----------------------------------------------------------------------------


def ten_hour_header() -> bytes:
    """A WAV header declaring ten hours of 16 kHz audio, and no data at all."""
    return _riff(1, 1, 16000, 2, b"", 10 * 3600 * 16000 * 2)


def wav_bomb(seconds: float = 150.0) -> bytes:
    """A small 8 kHz 8-bit WAV (``seconds`` of real data, ~1.2 MB) declaring 4 GB."""
    rng = np.random.default_rng(0)
    body = (rng.integers(120, 136, int(seconds * 8000))).astype(np.uint8).tobytes()
    return _riff(1, 1, 8000, 1, body, 0xFFFFFFFF)


def one_sample() -> bytes:
    """A WAV holding one sample."""
    return wav(np.zeros(1, dtype=np.float32), 16000)
