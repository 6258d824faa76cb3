"""Every task endpoint with real inputs: English and Chinese text, a real photo, spoken audio."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import requests

from tests.e2e.support import CHINESE, ENGLISH, SpokenWord, Target


def _ok(response: requests.Response) -> Any:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:500]}"
    return response.json()


def _labels(call: Callable[..., requests.Response], model: str) -> list[str]:
    return list(_ok(call("GET", f"/v1/models/{model}"))["labels"])


def test_embeddings_english_and_chinese(call: Callable[..., requests.Response]) -> None:
    texts = [
        ENGLISH,
        CHINESE,
        "The Federal Reserve increased borrowing costs to cool rising prices.",
        "My cat likes to sleep in the sun on the windowsill.",
    ]
    body = _ok(call("POST", "/v1/embeddings", json={"input": texts}))
    assert body["object"] == "list"
    vectors = np.array(
        [item["embedding"] for item in sorted(body["data"], key=lambda d: d["index"])]
    )
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    similarity = vectors @ vectors.T
    # Real semantics, not just shapes: a paraphrase is closer than an unrelated sentence.
    assert similarity[0, 2] > similarity[0, 3] + 0.2
    assert body["usage"]["prompt_tokens"] > 0
    assert body["model"]


@pytest.mark.parametrize("text", [ENGLISH, CHINESE], ids=["english", "chinese"])
def test_text_classification(call: Callable[..., requests.Response], text: str) -> None:
    body = _ok(call("POST", "/v1/text-classification", json={"text": text}))
    name = body["model"].split("@")[0]
    labels = _labels(call, name)
    assert body["label"] in labels
    assert 0.0 < body["score"] <= 1.0
    assert body["usage"]["units"] > 0


def test_image_classification_real_photo(
    call: Callable[..., requests.Response], cat_jpeg: bytes
) -> None:
    body = _ok(
        call(
            "POST",
            "/v1/image-classification",
            data=cat_jpeg,
            headers={"Content-Type": "image/jpeg"},
        )
    )
    top = body["predictions"]
    assert len(top) == 5
    # scikit-image's chelsea is a tabby cat: one of ImageNet's domestic cats (classes 281-285:
    # tabby, tiger cat, Persian, Siamese, Egyptian) must lead, whatever the label spelling.
    labels = _labels(call, body["model"].split("@")[0])
    assert 281 <= labels.index(body["label"]) <= 285, top
    assert body["label"] == top[0]["label"]
    assert top[0]["score"] == max(item["score"] for item in top)
    assert body["usage"] == {**body["usage"], "units": 1.0, "unit": "image"}


def test_object_detection_real_photo_as_json_and_drawn(
    call: Callable[..., requests.Response], cat_jpeg: bytes
) -> None:
    headers = {"Content-Type": "image/jpeg"}
    body = _ok(call("POST", "/v1/object-detection", data=cat_jpeg, headers=headers))
    cats = [d for d in body["detections"] if d["label"] == "cat"]
    assert cats and cats[0]["score"] > 0.5, body["detections"]
    assert body["usage"] == {**body["usage"], "units": 1.0, "unit": "image"}
    # Through API Gateway a binary answer needs a binary media type in Accept.
    drawn = call(
        "POST", "/v1/object-detection", data=cat_jpeg, headers={**headers, "Accept": "image/png"}
    )
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png"
    assert drawn.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_audio_classification_spoken_keyword(
    call: Callable[..., requests.Response], spoken_yes: SpokenWord
) -> None:
    body = _ok(
        call(
            "POST",
            "/v1/audio-classification?vad=true",
            data=spoken_yes.wav,
            headers={"Content-Type": "audio/wav"},
        )
    )
    assert body["label"] == spoken_yes.word, body
    # Voice activity from silero-vad: speech starts after the silence we put in front.
    segments = body["segments"]
    assert segments, body
    assert segments[0]["start"] == pytest.approx(spoken_yes.speech_start_s, abs=0.25)
    assert segments[-1]["end"] == pytest.approx(spoken_yes.speech_end_s, abs=0.25)
    assert body["duration_s"] == pytest.approx(spoken_yes.duration_s, abs=0.01)
    assert body["usage"]["unit"] == "audio_second"


def test_voice_activity_by_model_name(
    call: Callable[..., requests.Response], spoken_yes: SpokenWord
) -> None:
    """The generic predict route, with the VAD model that has no task route of its own."""
    body = _ok(
        call(
            "POST",
            "/v1/models/silero-vad/predict",
            data=spoken_yes.wav,
            headers={"Content-Type": "audio/wav"},
        )
    )
    assert body["model"].startswith("silero-vad@")
    segments = body["segments"]
    assert len(segments) == 1, segments
    # Where the waveform says the word is, within the VAD's 32 ms windows and its padding.
    assert segments[0]["start"] == pytest.approx(spoken_yes.speech_start_s, abs=0.25)
    assert segments[0]["end"] == pytest.approx(spoken_yes.speech_end_s, abs=0.25)


def test_customer_program_shape(http: requests.Session, target: Target, api_key: str) -> None:
    """What a customer writes: JSON as a string body, no Content-Type, the key as Bearer."""
    # Where the key source is the x-api-key header (LocalStack profile), Bearer is not read.
    bearer = {"Authorization": f"Bearer {api_key}"}
    headers = bearer if target.bearer_ok else {"x-api-key": api_key}
    response = http.post(
        target.url("/v1/text-classification"),
        headers=headers,
        data=json.dumps({"text": CHINESE}),
        timeout=target.timeout_s,
    )
    assert "Content-Type" not in response.request.headers
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["label"], str)


@pytest.mark.parametrize("auth", ["bearer", "x-api-key"])
def test_openai_client_embeddings(target: Target, api_key: str, auth: str) -> None:
    openai = pytest.importorskip("openai")
    if auth == "bearer" and not target.bearer_ok:
        pytest.skip(f"{target.name} reads keys only from x-api-key")
    client = openai.OpenAI(
        api_key=api_key,
        base_url=target.url("/v1"),
        default_headers={"x-api-key": api_key} if auth == "x-api-key" else None,
        timeout=target.timeout_s,
        max_retries=0,
    )
    # The client asks for base64 by default and decodes it: this covers that path too.
    result = client.embeddings.create(model="all-minilm-l6-v2-int8", input=[ENGLISH, CHINESE])
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == 384 for item in result.data)
    assert result.usage.total_tokens > 0
