"""The catalogue: every published model is listed with its version."""

from __future__ import annotations

from collections.abc import Callable

import requests


def test_models_lists_every_published_model(
    call: Callable[..., requests.Response], published_models: dict[str, set[str]]
) -> None:
    response = call("GET", "/v1/models")
    assert response.status_code == 200, response.text
    listed: dict[str, set[str]] = {}
    for entry in response.json()["models"]:
        versions = entry.get("versions") or [entry["version"]]
        listed.setdefault(entry["name"], set()).update(
            v if isinstance(v, str) else v["version"] for v in versions
        )
    for name, versions in published_models.items():
        assert name in listed, f"{name} missing from /v1/models ({sorted(listed)})"
        assert versions <= listed[name], f"{name}: published {versions}, listed {listed[name]}"


def test_model_detail_has_task_and_version(
    call: Callable[..., requests.Response], published_models: dict[str, set[str]]
) -> None:
    name = sorted(published_models)[0]
    body = call("GET", f"/v1/models/{name}").json()
    assert body["name"] == name
    assert body["task"]
