"""The speech engine: decoding every container under hard limits, VAD pieces, the runner."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aimaas import errors
from aimaas.inference import wire
from aimaas.inference.runners import RUNTIMES
from aimaas.manifest import SpeechPreprocessing
from aimaas.speech import TooLong, decode_audio
from aimaas.speech.formats import srt, vtt
from aimaas.speech.split import speech_pieces
from aimaas_testing import audio
from model_export.speech_eval import score

SECONDS = 9.963375  # beckett.wav


@pytest.mark.parametrize("container", sorted(audio.CONTAINERS))
def test_every_container_decodes_to_16k_mono(container: str, speech) -> None:
    samples, rate = speech
    decoded = decode_audio(audio.encode(samples, rate, container), max_seconds=60)
    assert decoded.sample_rate == 16000 and decoded.samples.dtype == np.float32
    assert decoded.duration_s == pytest.approx(SECONDS, abs=0.05)  # AAC pads a frame


@pytest.mark.parametrize(
    ("rate", "width", "channels"), [(8000, 1, 1), (44100, 3, 2), (48000, 4, 2)]
)
def test_wav_of_any_rate_width_and_channels(rate: int, width: int, channels: int, speech) -> None:
    samples, source = speech
    data = audio.wav(audio.resampled(samples, source, rate), rate, width=width, channels=channels)
    decoded = decode_audio(data, max_seconds=60)
    assert decoded.duration_s == pytest.approx(SECONDS, abs=0.01)
    assert 0.2 < float(np.abs(decoded.samples).max()) < 0.5  # scaled, not clipped or silent


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        (b"", 422, "empty"),
        (audio.one_sample(), 422, "at least"),
        (audio.ten_hour_header(), 422, "at least"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), 422, "accepted format"),
        (b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", 422, "decoded"),
        (audio.wav_bomb(), 413, "split it"),
    ],
    ids=["zero-length", "one-sample", "10-hour-header", "png", "broken-wav", "wav-bomb"],
)
def test_hostile_audio_is_refused(data: bytes, status: int, says: str) -> None:
    with pytest.raises(errors.ApiError) as refused:
        decode_audio(data, max_seconds=120)
    assert refused.value.status == status and says in refused.value.message


def test_a_truncated_mp3_is_refused(speech) -> None:
    with pytest.raises(errors.InvalidInput, match="corrupt or truncated"):
        decode_audio(audio.encode(*speech, "mp3")[:300], max_seconds=60)


def test_decoding_stops_at_the_limit_not_at_the_header() -> None:
    # 400 s of silence compresses into a small FLAC: refused by counting decoded samples.
    data = audio.encode(np.zeros(400 * 16000, dtype=np.float32), 16000, "flac")
    assert len(data) < 500_000
    with pytest.raises(TooLong):
        decode_audio(data, max_seconds=120)


def test_pieces_follow_speech_and_fit_one_window() -> None:
    params = SpeechPreprocessing(max_seconds=600, languages=["en"], vad_file="v.onnx")
    step = params.vad.window_samples / 16000  # 32 ms windows
    probs = np.zeros(int(100 / step), dtype=np.float32)
    for start, end in [(1, 5), (6, 20), (21, 40), (50, 95)]:  # 45 s without a pause at the end
        probs[int(start / step) : int(end / step)] = 0.9
    pieces = speech_pieces(probs, 100 * 16000, params)
    bounds = [(a / 16000, b / 16000) for a, b in pieces]
    assert all(b - a <= 30.0 + 1e-9 for a, b in bounds)
    assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(bounds))
    assert bounds[0][0] == pytest.approx(0.8, abs=0.05)  # padded, silence before it skipped
    assert not any(a < 45 < b for a, b in bounds)  # the 40-50 s pause is never decoded
    # Speech, its padding and the short pauses inside merged pieces; never the long pauses.
    assert 82 < sum(b - a for a, b in bounds) < 86


def test_the_ctranslate2_runtime_has_a_runner() -> None:
    assert RUNTIMES["ctranslate2"] == "aimaas.speech.runner:load_speech_runner"


@pytest.mark.parametrize("container", ["mp3", "ogg-opus", "m4a-aac"])
def test_the_runner_transcribes_real_speech(tiny_runner, speech, container: str) -> None:
    data = audio.encode(*speech, container)
    result = tiny_runner.run(wire.TranscriptionRequest(audio=[data], word_timestamps=True))
    assert score([audio.BECKETT_TEXT], [result.text]).wer <= 0.2, result.text
    assert result.language == "en"
    assert result.durations_s[0] == pytest.approx(SECONDS, abs=0.05)
    assert result.words and result.words[0].word.lower().startswith("ever")
    ends = [w.end for w in result.words]
    assert ends == sorted(ends) and ends[-1] <= result.durations_s[0]


def test_long_audio_is_transcribed_in_pieces_on_one_clock(tiny_runner, speech) -> None:
    samples, rate = speech
    gap = np.zeros(3 * rate, dtype=np.float32)
    long = np.concatenate([samples, gap, samples, gap, samples, gap, samples])  # ~49 s
    result = tiny_runner.run(wire.TranscriptionRequest(audio=[audio.wav(long, rate)]))
    duration = len(long) / rate
    assert result.durations_s[0] == pytest.approx(duration, abs=0.01)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end <= duration
    assert max(s.end for s in result.segments) > 40  # the last reading is placed at its time
    assert score([" ".join([audio.BECKETT_TEXT] * 4)], [result.text]).wer <= 0.2, result.text


def test_options_the_model_cannot_honour_are_refused(tiny_runner, speech) -> None:
    data = audio.wav(*speech)
    with pytest.raises(errors.InvalidInput, match="language 'zh'"):
        tiny_runner.run(wire.TranscriptionRequest(audio=[data], language="zh"))
    with pytest.raises(errors.InvalidInput, match="does not translate"):
        tiny_runner.run(wire.TranscriptionRequest(audio=[data], translate=True))


def test_subtitle_formats_are_openais() -> None:
    segments = [
        wire.TranscriptSegment(
            id=i, seek=0, start=a, end=b, text=t, tokens=[], temperature=0.0,
            avg_logprob=-0.2, compression_ratio=1.0, no_speech_prob=0.0,
        )
        for i, (a, b, t) in enumerate([(0.0, 2.5, " Ever tried."), (3661.25, 3662.0, " Fail.")])
    ]  # fmt: skip
    assert srt(segments) == (
        "1\n00:00:00,000 --> 00:00:02,500\nEver tried.\n\n"
        "2\n01:01:01,250 --> 01:01:02,000\nFail.\n\n"
    )
    assert vtt(segments) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nEver tried.\n\n"
        "01:01:01.250 --> 01:01:02.000\nFail.\n\n"
    )
