"""Audio preprocessing: WAV decoding, 16 kHz mono resampling, fixed clips and log-mel features.

WAV is parsed here with numpy rather than the stdlib ``wave`` module, because Python 3.11's
``wave`` reads neither IEEE-float nor ``WAVE_FORMAT_EXTENSIBLE`` files. Supported: PCM 8
(unsigned), 16, 24 and 32 bit, float 32 and 64 bit, any number of channels (averaged to mono).

The log-mel parameters come from :class:`aimaas.manifest.AudioPreprocessing`, so the keyword
spotter is trained at export time and served with exactly the same features.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache

import numpy as np
import soxr

from aimaas.errors import InvalidInput
from aimaas.manifest import AudioPreprocessing, VadPreprocessing

_PCM = 0x0001
_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE
#: Longest audio accepted, in seconds, before any decoding work.
DEFAULT_MAX_SECONDS = 600.0
_LOG_FLOOR = 1e-6


@dataclass(frozen=True)
class Audio:
    """Decoded audio: float32 mono samples in [-1, 1] and their sample rate."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)


def _chunks(data: bytes) -> dict[bytes, bytes]:
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        raise InvalidInput("the audio is not a RIFF/WAVE file")
    chunks: dict[bytes, bytes] = {}
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        body = data[offset + 8 : offset + 8 + size]
        chunks.setdefault(chunk_id, body)
        # Chunks are word-aligned; a truncated final data chunk is read as far as it goes.
        offset += 8 + size + (size & 1)
    return chunks


def decode_wav(data: bytes, *, max_seconds: float = DEFAULT_MAX_SECONDS) -> Audio:
    """Decode a WAV file to float32 mono.

    Parameters
    ----------
    data
        The bytes of a RIFF/WAVE file.
    max_seconds
        Longest duration accepted (checked from the header before converting samples).

    Returns
    -------
    Audio
        Mono samples in [-1, 1] at the file's own sample rate.

    Raises
    ------
    InvalidInput
        Not a WAV file, an unsupported encoding, no samples, or too long.
    """
    if not data:
        raise InvalidInput("the audio is empty")
    chunks = _chunks(data)
    fmt = chunks.get(b"fmt ")
    if fmt is None or len(fmt) < 16:
        raise InvalidInput("the WAV file has no valid 'fmt ' chunk")
    if b"data" not in chunks:
        raise InvalidInput("the WAV file has no 'data' chunk")
    audio_format, channels, sample_rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if audio_format == _EXTENSIBLE and len(fmt) >= 26:
        (audio_format,) = struct.unpack("<H", fmt[24:26])  # first two bytes of the sub-format GUID
    if channels < 1 or sample_rate < 1000 or sample_rate > 384_000:
        raise InvalidInput(f"unsupported WAV layout: {channels} channels at {sample_rate} Hz")
    width = bits // 8
    if bits % 8 or width < 1 or block_align != width * channels:
        raise InvalidInput(f"unsupported WAV sample size: {bits} bits")
    raw = chunks[b"data"]
    frames = len(raw) // block_align
    if frames == 0:
        raise InvalidInput("the WAV file has no samples")
    if frames / sample_rate > max_seconds:
        raise InvalidInput(f"the audio is longer than {max_seconds:g} seconds")
    raw = raw[: frames * block_align]
    if audio_format == _PCM and width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif audio_format == _PCM and width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif audio_format == _PCM and width == 3:
        triplets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = triplets[:, 0] | (triplets[:, 1] << 8) | (triplets[:, 2] << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
        samples = values.astype(np.float32) / float(1 << 23)
    elif audio_format == _PCM and width == 4:
        samples = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2.0**31).astype(np.float32)
    elif audio_format == _FLOAT and width in (4, 8):
        samples = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
        if not np.all(np.isfinite(samples)):
            raise InvalidInput("the WAV file holds non-finite samples")
        samples = np.clip(samples, -1.0, 1.0)
    else:
        raise InvalidInput(
            f"unsupported WAV encoding (format {audio_format:#06x}, {bits} bits); "
            "send PCM 8/16/24/32-bit or float 32/64-bit"
        )
    mono = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return Audio(samples=np.ascontiguousarray(mono, dtype=np.float32), sample_rate=sample_rate)


def resample(samples: np.ndarray, sample_rate: int, target_rate: int = 16000) -> np.ndarray:
    """Resample mono float32 audio with soxr (high quality); a no-op at the target rate."""
    samples = np.asarray(samples, dtype=np.float32)
    if sample_rate == target_rate:
        return samples
    return soxr.resample(samples, sample_rate, target_rate, quality="HQ").astype(np.float32)


def fit_clip(samples: np.ndarray, clip_samples: int, hop: int = 160) -> np.ndarray:
    """Pad or trim ``samples`` to exactly ``clip_samples``.

    A short clip is centred in silence. A long one keeps the ``clip_samples`` window with the
    most energy (searched in steps of ``hop``), so a word need not start at time zero.
    """
    samples = np.asarray(samples, dtype=np.float32)
    length = len(samples)
    if length == clip_samples:
        return samples
    if length < clip_samples:
        before = (clip_samples - length) // 2
        return np.pad(samples, (before, clip_samples - length - before)).astype(np.float32)
    energy = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    starts = np.arange(0, length - clip_samples + 1, hop)
    best = int(starts[np.argmax(energy[starts + clip_samples] - energy[starts])])
    return samples[best : best + clip_samples]


@cache
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """Triangular mel filters (HTK mel scale), float32 ``[n_mels, n_fft // 2 + 1]``."""

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(np.array(fmin)), to_mel(np.array(fmax)), n_mels + 2))
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    bank.setflags(write=False)
    return bank


def log_mel(samples: np.ndarray, params: AudioPreprocessing | None = None) -> np.ndarray:
    """Log-mel spectrogram of mono 16 kHz audio.

    Frames are taken without centre padding: ``1 + (len - win_length) // hop_length`` frames
    (98 for a one-second clip with the defaults).

    Parameters
    ----------
    samples
        float32 mono samples at ``params.sample_rate``, at least ``win_length`` long; a 2-D
        ``[batch, samples]`` array gives a batch of spectrograms.
    params
        Feature parameters (defaults of :class:`~aimaas.manifest.AudioPreprocessing`).

    Returns
    -------
    numpy.ndarray
        float32 ``[n_mels, frames]`` (or ``[batch, n_mels, frames]``): ``log(mel power + 1e-6)``.
    """
    p = params or AudioPreprocessing()
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim not in (1, 2) or samples.shape[-1] < p.win_length:
        raise InvalidInput(f"audio must be mono and at least {p.win_length} samples long")
    frames = np.lib.stride_tricks.sliding_window_view(samples, p.win_length, axis=-1)
    frames = frames[..., :: p.hop_length, :]
    window = np.hanning(p.win_length + 1)[:-1].astype(np.float32)  # periodic Hann
    spectrum = np.fft.rfft(frames * window, n=p.n_fft, axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    bank = mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax)
    mel = power @ bank.T
    return np.swapaxes(np.log(mel + _LOG_FLOOR), -1, -2).astype(np.float32)


def wav_to_features(
    data: bytes, params: AudioPreprocessing | None = None, *, max_seconds: float = 30.0
) -> tuple[np.ndarray, float]:
    """WAV bytes to the keyword spotter's input: decode, resample, fit the clip, log-mel.

    Returns
    -------
    tuple
        float32 features ``[n_mels, frames]`` and the decoded duration in seconds (for billing).
    """
    p = params or AudioPreprocessing()
    audio = decode_wav(data, max_seconds=max_seconds)
    samples = resample(audio.samples, audio.sample_rate, p.sample_rate)
    return log_mel(fit_clip(samples, p.clip_samples, p.hop_length), p), audio.duration_s


def vad_windows(samples: np.ndarray, params: VadPreprocessing | None = None) -> np.ndarray:
    """Split 16 kHz audio into silero-vad inputs: each window with the previous context.

    Returns
    -------
    numpy.ndarray
        float32 ``[n_windows, context_samples + window_samples]``; the last window is
        zero-padded, the first gets a zero context (what silero-vad's own wrapper does).
    """
    p = params or VadPreprocessing()
    samples = np.asarray(samples, dtype=np.float32)
    count = max(1, -(-len(samples) // p.window_samples))
    padded = np.zeros(p.context_samples + count * p.window_samples, dtype=np.float32)
    padded[p.context_samples : p.context_samples + len(samples)] = samples
    width = p.context_samples + p.window_samples
    return np.lib.stride_tricks.sliding_window_view(padded, width)[:: p.window_samples][:count]


def speech_segments(
    probabilities: np.ndarray, params: VadPreprocessing | None = None
) -> list[tuple[float, float]]:
    """Turn per-window speech probabilities into ``(start_s, end_s)`` segments.

    silero-vad's own hysteresis (``get_speech_timestamps``): a segment starts where the
    probability reaches ``threshold``; a pause starts at the first window below
    ``threshold - 0.15`` and ends the segment once it has lasted ``min_silence_ms``, unless the
    probability reaches ``threshold`` again first. Segments shorter than ``min_speech_ms`` are
    dropped. The export gate and serving both use this function.
    """
    p = params or VadPreprocessing()
    step = p.window_samples / p.sample_rate
    off_threshold = max(p.threshold - 0.15, 0.01)
    min_silence = p.min_silence_ms / 1000.0
    min_speech = p.min_speech_ms / 1000.0
    probs = np.asarray(probabilities, dtype=np.float32).reshape(-1)
    segments: list[tuple[float, float]] = []
    start: float | None = None
    pause: float | None = None
    for index, prob in enumerate(probs):
        moment = index * step
        if prob >= p.threshold:
            pause = None  # speech again: the pause was too short to end the segment
            if start is None:
                start = moment
        elif start is not None and prob < off_threshold:
            pause = moment if pause is None else pause
            if moment + step - pause >= min_silence:
                if pause - start >= min_speech:
                    segments.append((start, pause))
                start, pause = None, None
    if start is not None:
        end = len(probs) * step if pause is None else pause
        if end - start >= min_speech:
            segments.append((start, end))
    return segments
