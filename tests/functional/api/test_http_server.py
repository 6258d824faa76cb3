"""Local mode over real HTTP: `python -m aimaas_local serve` on a free loopback port.

Real keys (issued through ``aimaas.auth``), the real SQLite ledger, real models, and the two
client programs customers actually run: ``requests`` with ``data=json.dumps(...)`` (no
Content-Type) and the official ``openai`` client.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from aimaas_testing.auth import tenant_key
from aimaas_testing.paths import REGISTRY
from aimaas_testing.servers import launch_local_server


@dataclasses.dataclass(frozen=True)
class Server:
    url: str
    demo_key: str
    db: Path
    banner: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("local-mode")
    running = launch_local_server(
        registry=REGISTRY,
        db=folder / "aimaas.db",
        log_path=folder / "server.log",
        args=["--show-key", "--log-level", "warning"],  # its output is a file, not a terminal
        env={"AIMAAS_ONNX_THREADS": "1"},
    )
    try:
        yield Server(
            url=running.url, demo_key=running.demo_key(), db=folder / "aimaas.db",
            banner=running.logs(),
        )  # fmt: skip
    finally:
        running.stop()


@pytest.fixture(scope="module")
def api_key(server: Server) -> str:
    """A key issued through the auth package for a tenant of its own (not the demo one)."""
    return tenant_key(server.db, label="functional tests")


def test_banner_prints_key_and_curl_examples(server: Server) -> None:
    assert "curl" in server.banner and "/v1/text-classification" in server.banner
    assert server.demo_key.startswith("amk_")


@pytest.mark.parametrize(
    "text", ["The striker scored twice in the cup final.", "这家公司的股价今天大涨"]
)
def test_customer_program(server: Server, api_key: str, text: str) -> None:
    # Exactly what the customer's program does: no Content-Type, data=json.dumps(...).
    response = requests.post(
        f"{server.url}/v1/text-classification",
        headers={"Authorization": f"Bearer {api_key}"},
        data=json.dumps({"text": text}),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert "content-type" not in {k.lower() for k in response.request.headers}
    label = response.json()["label"]
    catalogue = requests.get(
        f"{server.url}/v1/models/multilingual-topic-classifier",
        headers={"x-api-key": api_key},
        timeout=30,
    ).json()
    assert label in catalogue["labels"]


#: The seed's client program, verbatim: only the placeholders get the server, key and text.
SEED_CLIENT = """import requests, json
url = "http://<server>/v1/text-classification"
headers = {"Authorization": "Bearer <key>"}
data = {"text": "这是一个示例文本"}
response = requests.post(url, headers=headers, data=json.dumps(data))
print(response.json()["label"])
"""
#: Five Chinese news headlines of different topics (in neither the held-out nor the tuning
#: set); the first three are the issue's, which MiniLM got wrong.
CHINESE_HEADLINES = {
    "国足在世界杯预选赛中以二比零战胜对手": "sports",
    "新冠疫苗接种率持续上升": "health",
    "苹果公司发布了新款智能手机": "technology",
    "A股三大指数集体收涨，券商板块领涨": "business",
    "总理出席联合国大会并发表讲话": "politics",
}


def _run_seed_client(server: Server, key: str, text: str | None) -> str:
    program = SEED_CLIENT.replace("<server>", server.url.removeprefix("http://"))
    program = program.replace("<key>", key)
    if text is not None:
        program = program.replace("这是一个示例文本", text)
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(("text", "topic"), CHINESE_HEADLINES.items())
def test_seed_client_gets_the_topic_of_chinese_headlines(
    server: Server, api_key: str, text: str, topic: str
) -> None:
    assert _run_seed_client(server, api_key, text) == topic


def test_seed_client_example_and_which_model_answered(server: Server, api_key: str) -> None:
    labels = requests.get(
        f"{server.url}/v1/models/multilingual-topic-classifier",
        headers={"x-api-key": api_key},
        timeout=30,
    ).json()["labels"]
    assert _run_seed_client(server, api_key, None) in labels  # the seed's own text
    headers = {"Authorization": f"Bearer {api_key}"}
    answered = requests.post(
        f"{server.url}/v1/text-classification",
        headers=headers,
        json={"text": "这支球队昨晚赢得了冠军"},
        timeout=30,
    ).json()
    assert answered["model"].startswith("multilingual-topic-classifier@")
    # Candidate labels in Chinese: zero-shot on the classifier's own encoder.
    zero_shot = requests.post(
        f"{server.url}/v1/text-classification",
        headers=headers,
        json={"text": "这支球队昨晚赢得了冠军", "labels": ["体育", "政治", "美食"]},
        timeout=30,
    ).json()
    assert zero_shot["label"] == "体育"
    assert zero_shot["model"].startswith("multilingual-e5-small-int8@")
    sentiment = requests.post(
        f"{server.url}/v1/text-classification",
        headers=headers,
        json={
            "text": ["这家餐厅的菜太难吃了，服务也很差", "I really enjoyed this film."],
            "model": "sentiment",
        },
        timeout=30,
    ).json()
    assert [r["label"] for r in sentiment["results"]] == ["negative", "positive"]
    assert sentiment["model"].startswith("sentiment@")


def test_demo_key_works(server: Server) -> None:
    response = requests.get(
        f"{server.url}/v1/models",
        headers={"Authorization": f"Bearer {server.demo_key}"},
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["data"]


def test_openai_client_lists_models_by_id(server: Server, api_key: str) -> None:
    from openai import OpenAI

    client = OpenAI(api_key=api_key, base_url=f"{server.url}/v1", max_retries=0)
    listed = list(client.models.list())
    expected = sorted(p.name for p in REGISTRY.iterdir() if (p / "").is_dir() and p.name[0] != ".")
    assert sorted(m.id for m in listed) == expected
    assert {m.object for m in listed} == {"model"} and {m.owned_by for m in listed} == {"aimaas"}
    assert all(isinstance(m.created, int) and m.created > 1_600_000_000 for m in listed)
    one = client.models.retrieve("all-minilm-l6-v2")
    # Our own catalogue fields are still there beside OpenAI's.
    assert one.id == "all-minilm-l6-v2" and one.model_extra["task"] == "embeddings"


def test_openai_client_embeddings(server: Server, api_key: str) -> None:
    from openai import OpenAI

    client = OpenAI(api_key=api_key, base_url=f"{server.url}/v1", max_retries=0)
    default = client.embeddings.create(
        model="all-minilm-l6-v2", input=["a cat on a mat", "一只猫坐在垫子上", "stock prices fell"]
    )  # the client asks for base64 by default and decodes it itself
    floats = client.embeddings.create(
        model="all-minilm-l6-v2", input="a cat on a mat", encoding_format="float"
    )
    vectors = np.asarray([d.embedding for d in default.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(vectors[0], floats.data[0].embedding, atol=1e-6)
    assert default.usage.prompt_tokens > 0 and default.model.startswith("all-minilm-l6-v2@")
    # Same meaning across languages is closer than a different meaning.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] - 0.2
    from openai import AuthenticationError, NotFoundError

    with pytest.raises(NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(AuthenticationError):
        OpenAI(api_key="amk_wrong", base_url=f"{server.url}/v1", max_retries=0).embeddings.create(
            model="all-minilm-l6-v2", input="x"
        )


def test_concurrent_requests_are_each_billed_once(server: Server, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def call(i: int) -> int:
        body = json.dumps({"input": f"sentence number {i % 8}"})  # a retry resends its body
        return requests.post(
            f"{server.url}/v1/embeddings",
            headers={**headers, "Idempotency-Key": f"conc-{i % 8}"},
            data=body,
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, range(16)))
    assert codes == [200] * 16
    from aimaas.auth import parse_key
    from aimaas.config import Settings
    from aimaas.metering.sqlite import SqliteLedger
    from aimaas.wiring import build_key_store

    store = build_key_store(Settings(sqlite_path=server.db))
    tenant = store.get_key(parse_key(api_key) or "").tenant_id
    store.close()
    ledger = SqliteLedger(server.db)
    try:
        records = [ledger.get(tenant, f"conc-{i}") for i in range(8)]
        assert ledger.get(tenant, "conc-8") is None
    finally:
        ledger.close()
    assert all(
        r is not None and r.status == 200 and r.model == "all-minilm-l6-v2-int8" for r in records
    )


def test_image_and_errors_over_http(server: Server, api_key: str) -> None:
    import io

    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.coffee()).save(buffer, "JPEG")
    auth = {"Authorization": f"Bearer {api_key}"}
    response = requests.post(
        f"{server.url}/v1/image-classification",
        headers=auth,
        files={"file": ("coffee.jpg", buffer.getvalue(), "image/jpeg")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert "espresso" in response.json()["label"].lower() or "cup" in response.json()["label"]
    too_big = requests.post(
        f"{server.url}/v1/image-classification",
        headers={**auth, "Content-Type": "image/jpeg"},
        data=b"\0" * (6 * 1024 * 1024 + 1),
        timeout=30,
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["request_id"] == too_big.headers["X-Request-Id"]
    as_json = requests.post(
        f"{server.url}/v1/image-classification",
        headers=auth,
        json={"image": base64.b64encode(b"definitely not a picture").decode()},
        timeout=30,
    )
    assert as_json.status_code == 422


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (apt) synthesises speech")
def test_spoken_keyword_with_vad(server: Server, api_key: str, tmp_path: Path) -> None:
    wav = tmp_path / "yes.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "yes"], check=True, timeout=30)
    raw = wav.read_bytes()  # espeak-ng writes 22.05 kHz mono: the server resamples
    response = requests.post(
        f"{server.url}/v1/audio-classification",
        params={"vad": "true"},
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "audio/wav"},
        data=raw,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == "yes", body["scores"]
    assert body["segments"], "speech expected"
    assert 0 <= body["segments"][0]["start"] < body["segments"][0]["end"] <= body["duration_s"]
