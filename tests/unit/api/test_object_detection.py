"""POST /v1/object-detection with the real ssd-mobilenet-v2: inputs, options, render, hostile
images, billing and the catalogue."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from aimaas_testing.media import image_bytes
from aimaas_testing.paths import has_model

AUTH = {"Authorization": "Bearer good-key"}
pytestmark = pytest.mark.skipif(
    not has_model("ssd-mobilenet-v2"), reason="ssd-mobilenet-v2 is not built (make models)"
)
ROUTE = "/v1/object-detection"
JPEG = {**AUTH, "Content-Type": "image/jpeg"}


def _labels(body: dict) -> set[str]:
    return {d["label"] for d in body["detections"]}


def test_raw_multipart_and_json_agree_in_the_pipeline_shape(harness, photo: bytes) -> None:
    raw = harness.client.post(ROUTE, headers=JPEG, content=photo)
    multipart = harness.client.post(
        ROUTE, headers=AUTH, files={"file": ("cat.jpg", photo, "image/jpeg")}
    )
    as_json = harness.client.post(
        ROUTE, headers=AUTH, json={"image": base64.b64encode(photo).decode()}
    )
    bodies = [r.json() for r in (raw, multipart, as_json)]
    assert [r.status_code for r in (raw, multipart, as_json)] == [200, 200, 200]
    assert bodies[0]["detections"] == bodies[1]["detections"] == bodies[2]["detections"]
    body = bodies[0]
    assert body["model"] == "ssd-mobilenet-v2@1.0.0"
    # $0.0035 an image plus the $0.000025 request fee, at pro's 0.8.
    assert body["usage"] == {"units": 1.0, "unit": "image", "price_usd": pytest.approx(0.00282)}
    (cat,) = [d for d in body["detections"] if d["label"] == "cat"]
    assert set(cat) == {"label", "score", "box"} and cat["score"] > 0.5
    assert set(cat["box"]) == {"xmin", "ymin", "xmax", "ymax"}
    assert body["results"][0]["width"] == 451 and body["results"][0]["height"] == 300
    assert 0 <= cat["box"]["xmin"] < cat["box"]["xmax"] <= 451


def test_threshold_and_max_detections_from_query_or_json(harness, photo: bytes) -> None:
    low = harness.client.post(f"{ROUTE}?threshold=0.0", headers=JPEG, content=photo).json()
    scores = [d["score"] for d in low["detections"]]
    assert scores == sorted(scores, reverse=True)
    assert min(scores) >= 0.3  # the graph's own floor: a lower threshold answers it
    one = harness.client.post(f"{ROUTE}?threshold=0&max_detections=1", headers=JPEG, content=photo)
    assert len(one.json()["detections"]) == 1
    body = {"image": base64.b64encode(photo).decode(), "threshold": 0.99}
    strict = harness.client.post(f"{ROUTE}?threshold=0", headers=AUTH, json=body).json()
    assert all(d["score"] >= 0.99 for d in strict["detections"])  # the body's own wins
    for bad in ("threshold=1.5", "threshold=-0.1", "max_detections=0", "max_detections=101"):
        assert harness.client.post(f"{ROUTE}?{bad}", headers=JPEG, content=photo).status_code == 422


def test_batch_answers_each_image_and_bills_each(harness, photo: bytes) -> None:
    encoded = base64.b64encode(photo).decode()
    body = harness.client.post(ROUTE, headers=AUTH, json={"images": [encoded] * 3}).json()
    assert len(body["results"]) == 3 and body["usage"]["units"] == 3.0
    assert body["results"][0]["detections"] == body["results"][2]["detections"]
    over = harness.client.post(ROUTE, headers=AUTH, json={"images": [encoded] * 17})
    assert over.status_code == 422 and "batch limit" in over.text


@pytest.mark.parametrize("how", ["query", "accept"])
def test_render_returns_a_png_with_the_boxes(harness, photo: bytes, how: str) -> None:
    headers = {**JPEG, "Accept": "image/png"} if how == "accept" else JPEG
    url = f"{ROUTE}?render=true" if how == "query" else ROUTE
    response = harness.client.post(url, headers=headers, content=photo)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert (
        response.headers["x-aimaas-units"] == "1" and response.headers["x-aimaas-unit"] == "image"
    )
    drawn = Image.open(io.BytesIO(response.content))
    drawn.load()
    assert drawn.format == "PNG" and drawn.size == (451, 300)
    original = Image.open(io.BytesIO(photo)).convert("RGB")
    assert drawn.convert("RGB").tobytes() != original.tobytes()  # something was drawn


def test_render_takes_one_image(harness, photo: bytes) -> None:
    encoded = base64.b64encode(photo).decode()
    response = harness.client.post(
        f"{ROUTE}?render=true", headers=AUTH, json={"images": [encoded, encoded]}
    )
    assert response.status_code == 422 and "one" in response.json()["error"]["message"]


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, "PNG")
    return buffer.getvalue()


def _huge_jpeg() -> bytes:
    # 7,000 x 5,000 (35 megapixels, under the 36 MP limit): decoded at a reduced scale.
    buffer = io.BytesIO()
    Image.new("RGB", (7000, 5000), (90, 120, 200)).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "status"),
    [
        ("1x1", lambda: _png((1, 1)), 200),
        ("cmyk-jpeg", lambda: image_bytes("CMYK", (64, 48), "JPEG"), 200),
        ("16-bit-png", lambda: image_bytes("I;16", (64, 48), "PNG"), 200),
        ("animated-gif", _animated_gif, 200),
        ("1x30000", lambda: _png((1, 30000)), 200),
        ("35-megapixel-jpeg", _huge_jpeg, 200),
        ("over-the-pixel-limit", lambda: _png((8000, 5000)), 422),
        ("not-an-image", lambda: b"GIF89a but not really", 422),
        ("empty", lambda: b"", 422),
    ],
)
def test_hostile_images_are_4xx_or_answered(harness, name: str, make, status: int) -> None:
    data = make()
    response = harness.client.post(
        ROUTE, headers={**AUTH, "Content-Type": "image/png"}, content=data
    )
    assert response.status_code == status, response.text
    if status == 200:
        result = response.json()["results"][0]
        shown = Image.open(io.BytesIO(data)).size
        assert (result["width"], result["height"]) == shown
        for item in result["detections"]:
            box = item["box"]
            assert 0 <= box["xmin"] <= box["xmax"] <= shown[0]
            assert 0 <= box["ymin"] <= box["ymax"] <= shown[1]
        rendered = harness.client.post(
            f"{ROUTE}?render=true", headers={**AUTH, "Content-Type": "image/png"}, content=data
        )
        assert rendered.status_code == 200
        assert Image.open(io.BytesIO(rendered.content)).format == "PNG"


def test_billed_exactly_once_per_2xx(harness, photo: bytes) -> None:
    encoded = base64.b64encode(photo).decode()
    calls = [
        {"content": photo, "headers": JPEG},  # 200, 1 image
        {"content": photo, "headers": {**JPEG, "Accept": "image/png"}},  # 200 rendered
        {"json": {"images": [encoded, encoded]}, "headers": AUTH},  # 200, 2 images
        {"content": b"broken", "headers": JPEG},  # 422
        {"json": {"images": [encoded] * 17}, "headers": AUTH},  # 422 over the batch limit
        {"content": photo, "headers": {**JPEG, "Idempotency-Key": "det-1"}},  # 200
        {"content": photo, "headers": {**JPEG, "Idempotency-Key": "det-1"}},  # replay: not billed
    ]
    statuses = [harness.client.post(ROUTE, **call).status_code for call in calls]
    assert statuses == [200, 200, 200, 422, 422, 200, 200]
    records = [r for r in harness.records() if r.task == "object-detection"]
    assert sorted(float(r.units) for r in records) == [1.0, 1.0, 1.0, 2.0]
    assert {r.model for r in records} == {"ssd-mobilenet-v2"}


def test_generic_predict_and_catalogue(harness, photo: bytes) -> None:
    predicted = harness.client.post(
        "/v1/models/ssd-mobilenet-v2/predict", headers=JPEG, content=photo
    )
    assert predicted.status_code == 200 and "cat" in _labels(predicted.json())
    info = harness.client.get("/v1/models/ssd-mobilenet-v2", headers=AUTH).json()
    assert info["task"] == "object-detection"
    assert info["price"] == {
        "unit": "image",
        "usd": 0.0035,
        "request_fee_usd": 0.000025,
        "currency": "USD",
    }
    assert info["schema"]["endpoint"] == ROUTE
    assert len(info["labels"]) == 80 and info["labels"][0] == "person"
    assert info["max_batch_size"] == 16
    assert "Apache-2.0" in info["licence"]
    assert {a["metric"] for a in info["accuracy"]} == {"precision", "recall"}


def test_openapi_documents_the_route(harness) -> None:
    spec = harness.client.get("/openapi.json").json()
    operation = spec["paths"][ROUTE]["post"]
    assert "image/png" in operation["responses"]["200"]["content"]
    assert "application/json" in operation["requestBody"]["content"]
    assert "ObjectDetectionOut" in spec["components"]["schemas"]
