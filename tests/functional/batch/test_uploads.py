"""OpenAI's Uploads API: a batch input larger than one request body, sent in parts through the
API (every file store) or PUT whole at a presigned S3 URL (the S3 store, on a moto server)."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
from fastapi.testclient import TestClient

from aimaas.api import create_app
from aimaas.api.container import build_container
from aimaas.config import Settings
from tests.functional.batch.conftest import BatchApp, embedding_lines
from tests.functional.batch.test_worker_killed import engine  # noqa: F401 - a fixture
from tests.functional.classifiers.conftest import HeaderTenantAuthenticator

LIMIT = 4096  # the request body limit of these apps: the file below is bigger


def _data(lines: int = 60) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in embedding_lines(lines))


def _post(app: BatchApp, path: str, tenant: str = "a", **kwargs: object) -> httpx.Response:
    return app.client.post(path, headers=app.headers(tenant), **kwargs)  # type: ignore[arg-type]


def test_a_file_over_the_body_limit_arrives_in_parts_and_runs_as_a_batch(
    make_app: Callable[..., BatchApp],
) -> None:
    app = make_app(batch_chunk_lines=20, max_body_bytes=LIMIT)
    data = _data()
    assert len(data) > LIMIT
    too_big = _post(app, "/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"})
    assert too_big.status_code == 413
    body = {"filename": "in.jsonl", "purpose": "batch", "bytes": len(data)}
    created = _post(app, "/v1/uploads", json=body)
    assert created.status_code == 200, created.text
    upload = created.json()
    assert upload["object"] == "upload" and upload["status"] == "pending"
    assert upload["upload_url"] is None  # the folder store has no presigned URL: parts only
    third = len(data) // 3 + 1
    part_ids = []
    for n in range(3):
        part = data[n * third : (n + 1) * third]
        sent = _post(app, f"/v1/uploads/{upload['id']}/parts", files={"data": ("p", part)})
        assert sent.status_code == 200, sent.text
        assert sent.json()["object"] == "upload.part"
        part_ids.append(sent.json()["id"])
    # Another tenant finds none of it.
    for path in ("parts", "complete", "cancel"):
        kwargs: dict = {"files": {"data": ("p", b"x")}} if path == "parts" else {"json": {}}
        assert _post(app, f"/v1/uploads/{upload['id']}/{path}", "b", **kwargs).status_code == 404
    short = _post(app, f"/v1/uploads/{upload['id']}/complete", json={"part_ids": part_ids[:2]})
    assert short.status_code == 422 and "declared" in short.json()["error"]["message"]
    unknown = _post(app, f"/v1/uploads/{upload['id']}/complete", json={"part_ids": ["part_x"]})
    assert unknown.status_code == 422
    done = _post(app, f"/v1/uploads/{upload['id']}/complete", json={"part_ids": part_ids})
    assert done.status_code == 200, done.text
    completed = done.json()
    assert completed["status"] == "completed" and completed["file"]["bytes"] == len(data)
    again = _post(app, f"/v1/uploads/{upload['id']}/complete", json={"part_ids": part_ids})
    assert again.json()["file"]["id"] == completed["file"]["id"]  # a retried complete
    file_id = completed["file"]["id"]
    assert app.get(f"/v1/files/{file_id}/content").content == data
    batch = app.wait(app.create(file_id).json()["id"])
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 60, "completed": 60, "failed": 0}
    # A pending upload can be cancelled; a cancelled one takes no parts.
    other = _post(app, "/v1/uploads", json=body).json()
    assert _post(app, f"/v1/uploads/{other['id']}/cancel").json()["status"] == "cancelled"
    late = _post(app, f"/v1/uploads/{other['id']}/parts", files={"data": ("p", b"x")})
    assert late.status_code == 422


def test_uploads_refuse_bad_requests_in_the_one_error_shape(
    make_app: Callable[..., BatchApp],
) -> None:
    app = make_app()
    for body in (
        {"filename": "in.jsonl", "purpose": "fine-tune", "bytes": 10},
        {"filename": "in.jsonl", "purpose": "batch", "bytes": 10**12},
        {"filename": "in.jsonl", "purpose": "batch", "bytes": 0},
    ):
        response = _post(app, "/v1/uploads", json=body)
        assert response.status_code == 422, response.text
        assert set(response.json()["error"]) == {"code", "message", "request_id"}
    assert _post(app, "/v1/uploads/upload_nope/complete", json={}).status_code == 404


def test_a_file_put_at_the_presigned_s3_url_becomes_the_batch_input(
    engine: dict[str, str],  # noqa: F811
) -> None:
    container = build_container(Settings.from_env({**engine, "AIMAAS_MAX_BODY_BYTES": str(LIMIT)}))
    container.authenticator = HeaderTenantAuthenticator()
    app = BatchApp(TestClient(create_app(container=container)), container)
    try:
        data = _data()
        body = {"filename": "in.jsonl", "purpose": "batch", "bytes": len(data)}
        upload = _post(app, "/v1/uploads", json=body).json()
        url, headers = upload["upload_url"], upload["upload_headers"]
        assert url.startswith(engine["AWS_ENDPOINT_URL"]) and "X-Amz-Signature=" in url
        # Signature version 4 with the KMS headers signed: the object can only be PUT under
        # the stage's key.
        signed = parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0].split(";")
        assert set(signed) == {"host", *headers}
        # Nothing PUT yet: completing with no parts is refused.
        early = _post(app, f"/v1/uploads/{upload['id']}/complete", json={})
        assert early.status_code == 422
        put = httpx.put(url, content=data, headers=headers)  # straight to S3, not the API
        assert put.status_code == 200, put.text
        done = _post(app, f"/v1/uploads/{upload['id']}/complete", json={})
        assert done.status_code == 200, done.text
        file = done.json()["file"]
        assert file["bytes"] == len(data)
        assert app.get(f"/v1/files/{file['id']}/content").content == data
        # The file is under the stage's key, like every object the store writes.
        s3 = boto3.client("s3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="batch")["Contents"]]
        final = next(k for k in keys if k.endswith(file["id"]))
        head = s3.head_object(Bucket="batch", Key=final)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == engine["AIMAAS_KMS_KEY_ID"]
        created = app.create(file["id"])
        assert created.status_code == 200, created.text
        assert created.json()["request_counts"]["total"] == 60
        # A PUT of the wrong size is not made a file.
        short = _post(app, "/v1/uploads", json=body).json()
        assert httpx.put(short["upload_url"], content=data[:-1], headers=headers).status_code == 200
        refused = _post(app, f"/v1/uploads/{short['id']}/complete", json={})
        assert refused.status_code == 422
    finally:
        app.client.close()
        container.close()
