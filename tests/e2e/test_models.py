"""The catalogue: every published model is listed with its version."""

from __future__ import annotations

from collections.abc import Callable

import requests


def test_models_lists_every_published_model(
    call: Callable[..., requests.Response], published_models: dict[str, set[str]]
) -> None:
    response = call("GET", "/v1/models")
    assert response.status_code == 200, response.text
    listed = {entry["name"]: set(entry["versions"]) for entry in response.json()["data"]}
    for name, versions in published_models.items():
        assert name in listed, f"{name} missing from /v1/models ({sorted(listed)})"
        assert versions <= listed[name], f"{name}: published {versions}, listed {listed[name]}"


def test_model_detail_has_task_and_version(
    call: Callable[..., requests.Response], published_models: dict[str, set[str]]
) -> None:
    for name, versions in published_models.items():
        response = call("GET", f"/v1/models/{name}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["name"] == name
        assert body["version"] == max(versions, key=lambda v: tuple(map(int, v.split("."))))
        assert body["task"] and body["schema"]["endpoint"].startswith("/v1/")
