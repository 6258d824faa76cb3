"""Audio preprocessing: WAV encodings, resampling, clip fitting, log-mel, VAD framing."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from aimaas.errors import InvalidInput
from aimaas.manifest import AudioPreprocessing, VadPreprocessing
from aimaas.preprocess.audio import (
    decode_wav,
    fit_clip,
    log_mel,
    resample,
    speech_segments,
    vad_windows,
    wav_to_features,
)

RATE = 16000


def sine(freq: float = 440.0, seconds: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(
    samples: np.ndarray,
    rate: int,
    *,
    fmt: int,
    bits: int,
    extensible: bool = False,
    channels: int = 1,
) -> bytes:
    """A RIFF/WAVE file written by hand, so each encoding is exactly what the test says."""
    frames = np.repeat(samples[:, None], channels, axis=1).reshape(-1)
    if fmt == 3:
        data = frames.astype("<f4" if bits == 32 else "<f8").tobytes()
    elif bits == 8:
        data = np.clip(np.round(frames * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    elif bits == 24:
        ints = np.round(frames * (2**23 - 1)).astype("<i4")
        data = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    else:
        scale = 2 ** (bits - 1) - 1
        data = np.round(frames * scale).astype({16: "<i2", 32: "<i4"}[bits]).tobytes()
    block = channels * bits // 8
    tag = 0xFFFE if extensible else fmt
    fmt_body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt_body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", fmt) + guid_tail
    chunks = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    chunks += b"LIST" + struct.pack("<I", 4) + b"INFO"  # an unrelated chunk must be skipped
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


@pytest.mark.parametrize(
    ("fmt", "bits", "tolerance"),
    [(1, 8, 1e-2), (1, 16, 1e-4), (1, 24, 1e-6), (1, 32, 1e-8), (3, 32, 1e-7), (3, 64, 1e-7)],
    ids=["pcm8", "pcm16", "pcm24", "pcm32", "float32", "float64"],
)
def test_every_encoding_decodes(fmt: int, bits: int, tolerance: float) -> None:
    original = sine()
    audio = decode_wav(wav_bytes(original, RATE, fmt=fmt, bits=bits))
    assert audio.sample_rate == RATE and audio.samples.dtype == np.float32
    np.testing.assert_allclose(audio.samples, original, atol=tolerance)
    assert audio.duration_s == pytest.approx(0.5)


def test_extensible_stereo_is_averaged_to_mono() -> None:
    original = sine()
    audio = decode_wav(wav_bytes(original, RATE, fmt=1, bits=16, extensible=True, channels=2))
    np.testing.assert_allclose(audio.samples, original, atol=1e-4)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFF\x00\x00\x00\x00WAVEjunk",
        b"OggS" + b"\x00" * 40,
        wav_bytes(sine(), RATE, fmt=1, bits=16)[:44],  # header only, no samples
        wav_bytes(sine(), RATE, fmt=2, bits=16),  # ADPCM
    ],
    ids=["empty", "no-chunks", "not-riff", "no-samples", "adpcm"],
)
def test_bad_wav_is_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_wav(data)


def test_too_long_is_refused_from_the_header() -> None:
    with pytest.raises(InvalidInput, match="longer than"):
        decode_wav(wav_bytes(sine(seconds=2.0), RATE, fmt=1, bits=16), max_seconds=1.0)


def test_resample_keeps_pitch_and_duration() -> None:
    rate = 44100
    resampled = resample(sine(1000.0, 1.0, rate), rate, RATE)
    assert len(resampled) == RATE
    peak = np.argmax(np.abs(np.fft.rfft(resampled))) * RATE / len(resampled)
    assert peak == pytest.approx(1000.0, abs=2.0)
    same = sine()
    assert resample(same, RATE, RATE) is same  # no work at the target rate


def test_fit_clip_pads_centred_and_trims_to_the_loudest_second() -> None:
    short = np.ones(8000, dtype=np.float32)
    padded = fit_clip(short, RATE)
    assert len(padded) == RATE and padded[:4000].max() == 0 and padded[4000:12000].min() == 1
    long = np.zeros(3 * RATE, dtype=np.float32)
    long[RATE + 8000 : RATE + 9000] = 1.0  # a click in the middle second
    window = fit_clip(long, RATE)
    assert len(window) == RATE and window.sum() == 1000


def test_log_mel_shape_and_band() -> None:
    params = AudioPreprocessing()
    features = log_mel(fit_clip(sine(1000.0, 1.0), params.clip_samples), params)
    assert features.shape == (params.n_mels, params.frames) and features.dtype == np.float32
    # A 1 kHz tone puts its energy in one band, the same in every frame.
    band = int(np.argmax(features[:, 50]))
    assert (np.argmax(features, axis=0) == band).all() and 5 < band < 25


def test_log_mel_batch_matches_single() -> None:
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((3, RATE)).astype(np.float32) * 0.1
    batch = log_mel(clips)
    assert batch.shape == (3, 40, 98)
    np.testing.assert_allclose(batch[1], log_mel(clips[1]), rtol=1e-5, atol=1e-5)


def test_wav_to_features_end_to_end() -> None:
    features, seconds = wav_to_features(
        wav_bytes(sine(seconds=0.7, rate=22050), 22050, fmt=1, bits=16)
    )
    assert features.shape == (40, 98) and seconds == pytest.approx(0.7, abs=1e-3)
    with pytest.raises(InvalidInput):
        log_mel(np.zeros(100, dtype=np.float32))


def test_vad_windows_carry_context() -> None:
    params = VadPreprocessing()
    samples = np.arange(1100, dtype=np.float32)
    windows = vad_windows(samples, params)
    assert windows.shape == (3, 576)
    assert (windows[0, :64] == 0).all() and windows[0, 64] == 0 and windows[0, -1] == 511
    np.testing.assert_array_equal(windows[1, :64], samples[448:512])  # previous window's tail
    assert windows[2, 64 + 1100 - 1024 - 1] == 1099 and windows[2, -1] == 0  # zero-padded end


def test_speech_segments_hysteresis_and_minimum() -> None:
    params = VadPreprocessing()  # 32 ms windows, 250 ms min speech, 100 ms min silence
    probs = np.zeros(100, dtype=np.float32)
    probs[10:30] = 0.9  # 640 ms of speech
    probs[30:32] = 0.4  # a dip above threshold - 0.15: still speech
    probs[32:40] = 0.9
    probs[60:64] = 0.9  # 128 ms: too short to count
    segments = speech_segments(probs, params)
    assert len(segments) == 1
    start, end = segments[0]
    assert start == pytest.approx(10 * 0.032) and end == pytest.approx(40 * 0.032)
