"""The app with the ``s3`` model store (moto): lazy download into the cache, sha256 on load."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws

from aimaas.api import build_container, create_app
from aimaas.auth import Principal
from aimaas.config import Settings
from aimaas_testing.auth import FixedAuthenticator
from aimaas_testing.media import wav
from aimaas_testing.paths import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
UPLOADED = ("keyword-spotter", "silero-vad")  # the two small models: quick to copy


@pytest.fixture
def s3_app(tmp_path: Path) -> Iterator[tuple[TestClient, Any, Path]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="aimaas-models")
        for name in UPLOADED:
            for path in (REGISTRY / name).rglob("*"):
                if path.is_file():
                    key = f"models/{path.relative_to(REGISTRY)}"
                    s3.upload_file(str(path), "aimaas-models", key)
        cache = tmp_path / "cache"
        settings = dataclasses.replace(
            Settings.from_env({}),
            model_store="s3",
            model_bucket="aimaas-models",
            model_prefix="models/",
            model_cache_dir=cache,
            sqlite_path=tmp_path / "aimaas.db",
        )
        container = build_container(settings)
        container.authenticator = FixedAuthenticator(Principal("t_s3", "k_s3", "pro"))
        app = create_app(container=container)
        with TestClient(app) as client:
            yield client, s3, cache
        container.close()


def test_models_come_from_s3_on_first_use(s3_app: Any) -> None:
    client, _, cache = s3_app
    listed = {m["name"] for m in client.get("/v1/models").json()["data"]}
    assert listed == set(UPLOADED)
    assert not cache.exists() or not any(cache.rglob("*.onnx"))  # listing downloads nothing
    response = client.post(
        "/v1/audio-classification?vad=true",
        headers={"Content-Type": "audio/wav"},
        content=wav(freq=300.0),
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"].startswith("keyword-spotter@")
    assert {p.parent.parent.name for p in cache.rglob("*.onnx")} == set(UPLOADED)


def test_a_tampered_object_in_s3_is_never_served(s3_app: Any) -> None:
    client, s3, _ = s3_app
    manifest = client.app.state.container.registry.resolve("keyword-spotter")
    key = f"models/keyword-spotter/{manifest.version}/{manifest.artifact.file}"
    body = bytearray(s3.get_object(Bucket="aimaas-models", Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket="aimaas-models", Key=key, Body=bytes(body))
    response = client.post(
        "/v1/audio-classification", headers={"Content-Type": "audio/wav"}, content=wav(freq=300.0)
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_integrity_error"
    # Once the object is fixed, the next call downloads it again and serves.
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket="aimaas-models", Key=key, Body=bytes(body))
    again = client.post(
        "/v1/audio-classification", headers={"Content-Type": "audio/wav"}, content=wav(freq=300.0)
    )
    assert again.status_code == 200, again.text
