"""Task endpoints on real models: answers, batching, metering exactly once."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import numpy as np
import pytest

from aimaas.plans import load_catalog

AUTH = {"Authorization": "Bearer good-key"}


def test_text_classification_without_content_type(harness) -> None:
    body = json.dumps({"text": "The striker scored twice in the cup final."})
    response = harness.client.post("/v1/text-classification", headers=AUTH, content=body)
    assert response.status_code == 200, response.text
    data = response.json()
    labels = harness.container.registry.resolve("multilingual-topic-classifier").labels
    assert data["label"] in labels
    assert data["score"] == max(data["scores"].values())
    assert sum(data["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert data["model"].startswith("multilingual-topic-classifier@")
    assert response.headers["x-aimaas-model"] == data["model"]
    [record] = harness.records()
    assert record.request_id == response.headers["x-request-id"]
    assert record.task == "text-classification" and record.unit == "1k_tokens"
    assert float(record.units) == pytest.approx(data["usage"]["units"]) and record.units > 0
    assert data["usage"]["price_usd"] > 0


def test_text_classification_batch_and_chinese(harness) -> None:
    texts = ["这支球队昨晚赢得了冠军", "The central bank raised interest rates again."]
    response = harness.client.post("/v1/text-classification", headers=AUTH, json={"text": texts})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["label"] is None and data["scores"] is None  # a list gets only `results`
    assert len(data["results"]) == 2
    single = harness.client.post(
        "/v1/text-classification", headers=AUTH, json={"text": texts[1]}
    ).json()
    assert data["results"][1]["label"] == single["label"]
    # Dynamic int8 quantisation scales activations per batch: padding moves scores slightly
    # (up to ~0.01 through E5's twelve layers).
    assert data["results"][1]["score"] == pytest.approx(single["score"], abs=1.5e-2)
    assert len(harness.records()) == 2  # one record per call, not per text


def test_zero_shot_over_candidate_labels(harness) -> None:
    labels = ["sports", "politics", "cooking", "technology"]
    texts = [
        "The striker scored twice in the final.",
        "Parliament passed the budget bill after a long debate.",
        "Simmer the onions in butter until golden.",
    ]
    response = harness.client.post(
        "/v1/text-classification", headers=AUTH, json={"text": texts, "labels": labels}
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert [r["label"] for r in data["results"]] == ["sports", "politics", "cooking"]
    # The default classifier is multilingual: its own encoder scores the candidates.
    assert data["model"].startswith("multilingual-e5-small-int8@")
    # A named embeddings model still answers itself.
    named = harness.client.post(
        "/v1/text-classification",
        headers=AUTH,
        json={"text": texts, "labels": labels, "model": "all-minilm-l6-v2-int8"},
    ).json()
    assert named["model"].startswith("all-minilm-l6-v2-int8@")
    assert [r["label"] for r in named["results"]] == ["sports", "politics", "cooking"]
    assert harness.records()[0].task == "text-classification"


def test_embeddings_float_and_base64_agree(harness) -> None:
    request = {"input": ["hello world", "你好 世界"], "model": "all-minilm-l6-v2"}
    floats = harness.client.post("/v1/embeddings", headers=AUTH, json=request)
    packed = harness.client.post(
        "/v1/embeddings", headers=AUTH, json={**request, "encoding_format": "base64"}
    )
    assert floats.status_code == packed.status_code == 200, floats.text
    a = np.asarray([d["embedding"] for d in floats.json()["data"]], dtype=np.float32)
    b = np.stack(
        [
            np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
            for d in packed.json()["data"]
        ]
    )
    assert a.shape == (2, 384) and np.array_equal(a, b)
    body = floats.json()
    assert body["object"] == "list" and body["data"][1]["index"] == 1
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 4
    assert body["usage"]["units"] == pytest.approx(body["usage"]["prompt_tokens"] / 1000)


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"dimensions": 384}, 200),
        ({"dimensions": 128}, 422),
        ({"input": [[101, 7592, 102]]}, 422),
        ({"input": ""}, 422),
        ({"input": []}, 422),
        ({"model": "text-embedding-3-small"}, 404),
        ({"model": "mobilenet-v2"}, 422),
        ({"encoding_format": "int8"}, 422),
        ({"user": "someone", "unknown_openai_field": 1}, 200),
    ],
)
def test_embeddings_request_validation(harness, extra: dict, status: int) -> None:
    response = harness.client.post("/v1/embeddings", headers=AUTH, json={"input": "hi", **extra})
    assert response.status_code == status, response.text
    assert len(harness.records()) == (1 if status == 200 else 0)


def test_batch_over_the_model_limit_is_422(harness) -> None:
    limit = harness.container.registry.resolve("all-minilm-l6-v2-int8").max_batch_size
    response = harness.client.post(
        "/v1/embeddings", headers=AUTH, json={"input": ["x"] * (limit + 1)}
    )
    assert response.status_code == 422
    assert "batch limit" in response.json()["error"]["message"]
    ok = harness.client.post("/v1/embeddings", headers=AUTH, json={"input": ["x"] * limit})
    assert ok.status_code == 200


def test_image_raw_multipart_and_json_agree(harness, photo: bytes) -> None:
    raw = harness.client.post(
        "/v1/image-classification?top_k=3",
        headers={**AUTH, "Content-Type": "image/jpeg"},
        content=photo,
    )
    multipart = harness.client.post(
        "/v1/image-classification?top_k=3",
        headers=AUTH,
        files={"file": ("cat.jpg", photo, "image/jpeg")},
    )
    as_json = harness.client.post(
        "/v1/image-classification",
        headers=AUTH,
        json={"image": base64.b64encode(photo).decode(), "top_k": 3},
    )
    bodies = [r.json() for r in (raw, multipart, as_json)]
    assert [r.status_code for r in (raw, multipart, as_json)] == [200, 200, 200], bodies
    assert bodies[0]["predictions"] == bodies[1]["predictions"] == bodies[2]["predictions"]
    assert len(bodies[0]["predictions"]) == 3
    assert "cat" in bodies[0]["label"].lower() or "mau" in bodies[0]["label"].lower()
    assert bodies[0]["usage"]["units"] == 1.0 and bodies[0]["usage"]["unit"] == "image"
    assert len(harness.records()) == 3


def test_image_batch_runs_as_one_call(harness, photo: bytes) -> None:
    encoded = base64.b64encode(photo).decode()
    response = harness.client.post(
        "/v1/image-classification", headers=AUTH, json={"images": [encoded, encoded]}
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert len(data["results"]) == 2 and data["usage"]["units"] == 2.0
    assert data["results"][0] == data["results"][1]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"content": b"not an image", "headers": {"Content-Type": "image/png"}}, 422),
        ({"content": b"", "headers": {"Content-Type": "image/png"}}, 422),
        ({"content": b"GIF89a", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"json": {"image": "%%%not base64"}}, 422),
        ({"json": {}}, 422),
        ({"json": {"image": "aGk=", "images": ["aGk="]}}, 422),
        ({"content": b'{"image": ', "headers": {"Content-Type": "application/json"}}, 400),
        ({"files": {"other": (None, "text only")}}, 422),
    ],
)
def test_image_bad_inputs(harness, kwargs: dict, status: int) -> None:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    response = harness.client.post("/v1/image-classification", headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert harness.records() == []


def test_image_top_k_bounds(harness, photo: bytes) -> None:
    headers = {**AUTH, "Content-Type": "image/jpeg"}
    assert (
        harness.client.post("/v1/image-classification?top_k=21", headers=headers, content=photo)
    ).status_code == 422
    top20 = harness.client.post("/v1/image-classification?top_k=20", headers=headers, content=photo)
    assert len(top20.json()["predictions"]) == 20


def test_audio_any_rate_stereo_with_vad(harness, make_wav: Callable[..., bytes]) -> None:
    clip = make_wav(seconds=1.5, rate=44100, channels=2)
    response = harness.client.post(
        "/v1/audio-classification?vad=true",
        headers={**AUTH, "Content-Type": "audio/wav"},
        content=clip,
    )
    assert response.status_code == 200, response.text
    data = response.json()
    labels = harness.container.registry.resolve("keyword-spotter").labels
    assert data["label"] in labels
    assert sum(data["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert data["duration_s"] == pytest.approx(1.5, abs=1e-3)
    assert isinstance(data["segments"], list)  # a pure tone: VAD decides; the field is there
    assert data["usage"] == {**data["usage"], "units": pytest.approx(1.5), "unit": "audio_second"}
    without = harness.client.post(
        "/v1/audio-classification", headers={**AUTH, "Content-Type": "audio/x-wav"}, content=clip
    ).json()
    assert without["segments"] is None and without["label"] == data["label"]


@pytest.mark.parametrize(
    ("content", "media", "status"),
    [(b"RIFF....WAVEjunk", "audio/wav", 422), (b"ID3\x03mp3", "audio/mpeg", 415)],
)
def test_audio_bad_inputs(harness, content: bytes, media: str, status: int) -> None:
    response = harness.client.post(
        "/v1/audio-classification", headers={**AUTH, "Content-Type": media}, content=content
    )
    assert response.status_code == status, response.text


def test_generic_predict_by_name_and_version(harness, photo: bytes) -> None:
    version = harness.container.registry.resolve("mobilenet-v2").version
    response = harness.client.post(
        f"/v1/models/mobilenet-v2/predict?version={version}&top_k=2",
        headers={**AUTH, "Content-Type": "image/jpeg"},
        content=photo,
    )
    assert response.status_code == 200 and len(response.json()["predictions"]) == 2
    emb = harness.client.post(
        "/v1/models/all-minilm-l6-v2/predict", headers=AUTH, json={"input": ["a", "b"]}
    )
    assert emb.status_code == 200 and emb.json()["model"].startswith("all-minilm-l6-v2@")
    missing = harness.client.post(
        "/v1/models/mobilenet-v2/predict?version=9.9.9", headers=AUTH, content=photo
    )
    assert missing.status_code == 404
    assert harness.client.post("/v1/models/nope/predict", headers=AUTH).status_code == 404


def test_catalogue_lists_every_model_with_price_and_schema(harness) -> None:
    response = harness.client.get("/v1/models", headers=AUTH)
    assert response.status_code == 200
    listed = {m["name"]: m for m in response.json()["data"]}
    assert set(listed) == set(harness.container.registry.names())
    mobilenet = listed["mobilenet-v2"]
    assert mobilenet["task"] == "image-classification"
    assert mobilenet["price"] == {
        "unit": "image",
        "usd": 0.001,
        "request_fee_usd": float(load_catalog().request_fee_usd),
        "currency": "USD",
    }
    assert mobilenet["schema"]["endpoint"] == "/v1/image-classification"
    assert len(mobilenet["labels"]) == 1000
    one = harness.client.get("/v1/models/all-minilm-l6-v2", headers=AUTH).json()
    assert one["price"]["usd"] == 0.00015  # the model's own price overrides its task's
    assert harness.client.get("/v1/models/nope", headers=AUTH).status_code == 404


def test_catalogue_carries_each_manifests_parity_and_accuracy(harness) -> None:
    """The export gate's figures, as the manifest holds them, typed in the OpenAPI contract."""
    listed = harness.client.get("/v1/models", headers=AUTH).json()["data"]
    for model in listed:
        manifest = harness.container.registry.resolve(model["name"])
        assert model["parity"] == manifest.parity.model_dump(), model["name"]
        assert model["accuracy"] == [a.model_dump() for a in manifest.accuracy], model["name"]
    mobilenet = next(m for m in listed if m["name"] == "mobilenet-v2")
    assert mobilenet["parity"]["passed"] is True
    assert {"top1_agreement", "max_logit_diff"} <= set(mobilenet["parity"]["metrics"])
    schemas = harness.client.get("/openapi.json").json()["components"]["schemas"]
    info = schemas["ModelInfo"]["properties"]
    assert info["parity"]["$ref"].endswith("/ParityOut")
    assert info["accuracy"]["items"]["$ref"].endswith("/AccuracyOut")
    assert set(schemas["ParityOut"]["required"]) == {
        "reference",
        "samples",
        "metrics",
        "tolerances",
        "passed",
    }
    assert schemas["AccuracyOut"]["properties"]["dataset"]["description"]
