"""``POST /v1/audio/transcriptions`` over real HTTP: the official ``openai`` client against the
live local server (real keys, the SQLite ledger, Whisper tiny.en), every response format,
billing per audio second exactly once, and hostile audio refused, unbilled, worker alive."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from aimaas_testing import audio
from aimaas_testing.auth import tenant_key
from aimaas_testing.servers import ServerProcess, launch_local_server
from model_export.speech_eval import score

from .conftest import REGISTRY, built

SECONDS = 9.963375
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    built("whisper-tiny-en")
    folder = tmp_path_factory.mktemp("speech")
    running = launch_local_server(
        registry=REGISTRY,
        db=folder / "aimaas.db",
        log_path=folder / "server.log",
        args=["--log-level", "warning"],
        env={"AIMAAS_ONNX_THREADS": "2"},
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def key(server: ServerProcess) -> str:
    return tenant_key(server.db, label="speech tests")


@pytest.fixture(scope="module")
def client(server: ServerProcess, key: str):
    from openai import OpenAI

    return OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def mp3() -> bytes:
    return audio.encode(*audio.beckett(), "mp3")


def billed(server: ServerProcess, key: str) -> tuple[int, float]:
    """Calls and audio seconds billed to ``key``'s tenant for speech so far."""
    rows = requests.get(
        f"{server.url}/v1/usage",
        params={"group_by": "model"},
        headers={"x-api-key": key},
        timeout=30,
    ).json()["rows"]
    row = next((r for r in rows if r["model"] == "whisper-tiny-en"), None)
    return (0, 0.0) if row is None else (row["calls"], row["units"])


def test_every_response_format_through_the_openai_client(
    server: ServerProcess,
    key: str,
    client,
    mp3: bytes,
) -> None:
    before = billed(server, key)
    upload = ("beckett.mp3", mp3, "audio/mpeg")
    plain = client.audio.transcriptions.create(model="whisper-1", file=upload)
    assert score([audio.BECKETT_TEXT], [plain.text]).wer <= 0.2, plain.text
    assert plain.usage.type == "duration" and plain.usage.seconds == 10

    text = client.audio.transcriptions.create(
        model="whisper-1", file=upload, response_format="text"
    )
    assert isinstance(text, str) and text.endswith("\n")
    assert score([audio.BECKETT_TEXT], [text]).wer <= 0.2

    srt = client.audio.transcriptions.create(model="whisper-1", file=upload, response_format="srt")
    assert srt.startswith("1\n00:00:00,") and " --> " in srt

    vtt = client.audio.transcriptions.create(model="whisper-1", file=upload, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.") and " --> " in vtt

    verbose = client.audio.transcriptions.create(
        model="whisper-tiny-en",
        file=upload,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert verbose.language == "english" and verbose.task == "transcribe"
    assert verbose.duration == pytest.approx(SECONDS, abs=0.05)
    assert verbose.segments and verbose.segments[0].start < 1.0
    assert verbose.words and verbose.words[0].word.lower().startswith("ever")
    assert verbose.words[-1].end <= verbose.duration

    segments_only = client.audio.transcriptions.create(
        model="whisper-1", file=upload, response_format="verbose_json"
    )
    assert segments_only.segments and segments_only.words is None

    calls, seconds = billed(server, key)
    assert calls - before[0] == 6  # one record per answered call
    assert seconds - before[1] == pytest.approx(6 * SECONDS, abs=0.3)


@pytest.mark.parametrize("container", ["wav", "flac", "webm-opus"])
def test_other_containers_over_http(client, container: str) -> None:
    samples, rate = audio.beckett()
    data = (
        audio.wav(samples, rate) if container == "wav" else audio.encode(samples, rate, container)
    )
    result = client.audio.transcriptions.create(model="whisper-1", file=(f"a.{container}", data))
    assert score([audio.BECKETT_TEXT], [result.text]).wer <= 0.2, result.text


def test_a_retried_request_is_billed_once(server: ServerProcess, key: str, mp3: bytes) -> None:
    before = billed(server, key)
    for _ in range(2):
        response = requests.post(
            f"{server.url}/v1/audio/transcriptions",
            headers={"x-api-key": key, "Idempotency-Key": "speech-retry-1"},
            files={"file": ("b.mp3", mp3, "audio/mpeg")},
            data={"model": "whisper-1"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
    assert billed(server, key)[0] - before[0] == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"files": {"file": ("empty.wav", b"", "audio/wav")}}, 422),
        ({"files": {"file": ("one.wav", audio.one_sample(), "audio/wav")}}, 422),
        ({"files": {"file": ("10h.wav", audio.ten_hour_header(), "audio/wav")}}, 422),
        ({"files": {"file": ("bomb.wav", audio.wav_bomb(), "audio/wav")}}, 413),
        ({"files": {"file": ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(500), "audio/wav")}}, 422),
        ({"data": b"RIFF....", "headers": {"Content-Type": "audio/wav"}}, 415),
        ({"files": {"file": ("a.mp3", b"ID3")}, "data": {"response_format": "docx"}}, 422),
        ({"files": {"file": ("a.mp3", b"ID3")}, "data": {"model": "no-such-model"}}, 404),
    ],
    ids=["zero-length", "one-sample", "10-hour-header", "wav-bomb", "png-as-wav",
         "raw-body", "bad-format", "unknown-model"],
)  # fmt: skip
def test_hostile_audio_is_refused_unbilled_and_the_worker_lives(
    server: ServerProcess, key: str, body: dict, status: int
) -> None:
    before = billed(server, key)
    headers = {"x-api-key": key, **body.pop("headers", {})}
    response = requests.post(
        f"{server.url}/v1/audio/transcriptions", headers=headers, timeout=60, **body
    )
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message", "request_id"}
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    assert billed(server, key) == before


def test_a_truncated_mp3_is_refused(server: ServerProcess, key: str, mp3: bytes) -> None:
    before = billed(server, key)
    response = requests.post(
        f"{server.url}/v1/audio/transcriptions",
        headers={"x-api-key": key},
        files={"file": ("cut.mp3", mp3[:300], "audio/mpeg")},
        timeout=60,
    )
    assert response.status_code == 422 and "truncated" in response.json()["error"]["message"]
    assert billed(server, key) == before


def test_the_catalogue_lists_the_speech_model(server: ServerProcess, key: str) -> None:
    models = requests.get(f"{server.url}/v1/models", headers={"x-api-key": key}, timeout=30)
    entry = next(m for m in models.json()["data"] if m["name"] == "whisper-tiny-en")
    assert entry["task"] == "automatic-speech-recognition"
    assert entry["languages"] == ["en"]
    assert entry["limits"]["max_seconds"] > 30
    assert entry["price"] == {
        "unit": "audio_second",
        "usd": 0.0001,
        "request_fee_usd": 0.000025,
        "currency": "USD",
    }
    assert entry["schema"]["endpoint"] == "/v1/audio/transcriptions"


def aishell(name: str) -> bytes:
    from model_export.speech_eval import aishell_set

    clips = aishell_set().clips
    return clips[0 if name.endswith("0121") else 1][0]


def test_translations_through_the_openai_client(client, mp3: bytes) -> None:
    english = client.audio.translations.create(model="whisper-1", file=("b.mp3", mp3))
    assert score([audio.BECKETT_TEXT], [english.text]).wer <= 0.2, english.text
    mandarin = client.audio.translations.create(
        model="whisper-base",
        file=("w0121.wav", aishell("W0121")),
        response_format="verbose_json",
    )
    assert mandarin.task == "translate" and mandarin.language == "chinese"
    assert mandarin.text and mandarin.text.isascii(), mandarin.text  # English words
    for fmt in ("text", "srt", "vtt"):
        assert client.audio.translations.create(
            model="whisper-1", file=("b.mp3", mp3), response_format=fmt
        ).strip()


def test_a_model_that_cannot_translate_is_refused(server: ServerProcess, key: str) -> None:
    before = billed(server, key)
    response = requests.post(
        f"{server.url}/v1/audio/translations",
        headers={"x-api-key": key},
        files={"file": ("b.wav", audio.wav(*audio.beckett()))},
        data={"model": "whisper-tiny-en"},
        timeout=60,
    )
    assert response.status_code == 422 and "translate" in response.json()["error"]["message"]
    assert billed(server, key) == before


def test_chinese_is_simplified_unless_traditional_is_asked(client) -> None:
    import opencc

    to_simplified = opencc.OpenCC("t2s").convert
    upload = ("w0122.wav", aishell("W0122"))
    # A prompt in Traditional characters makes Whisper write them (as it often does unasked).
    prompt = "以下是繁體中文的句子。"
    simplified = client.audio.transcriptions.create(
        model="whisper-base", file=upload, language="zh", prompt=prompt
    ).text
    assert simplified == to_simplified(simplified)
    assert score(["一二线城市虽然也处于调整中"], [simplified], chinese=True).cer <= 0.2, simplified
    traditional = client.audio.transcriptions.create(
        model="whisper-base",
        file=upload,
        language="zh",
        prompt=prompt,
        extra_body={"chinese_script": "traditional"},
    ).text
    assert traditional != simplified, traditional
    assert to_simplified(traditional) == simplified
