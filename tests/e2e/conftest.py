"""Fixtures of the end-to-end suite; what a target is and how it is configured: support.py."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.e2e.support import (
    AdminCli,
    HeaderKeyMirror,
    SpokenWord,
    Target,
    Tenant,
    espeak,
    speech_bounds,
    wav_bytes,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the whole e2e tier, with the reason, when no target is configured."""
    if os.environ.get("AIMAAS_E2E_BASE_URL", "").strip():
        return
    skip = pytest.mark.skip(
        reason="no target: set AIMAAS_E2E_BASE_URL (scripts/e2e.sh does it for `make test`)"
    )
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def target() -> Target:
    found = Target.from_env()
    if found is None:
        pytest.skip("no target: set AIMAAS_E2E_BASE_URL")
    return found


# --- the admin CLI: tenants, keys, usage --------------------------------------------------


@pytest.fixture(scope="session")
def admin(target: Target) -> AdminCli:
    if target.admin_flags is None:
        pytest.skip("needs the admin CLI for this target: set AIMAAS_E2E_ADMIN")
    return AdminCli(target.admin_flags)


@pytest.fixture(scope="session")
def new_tenant(admin: AdminCli, target: Target) -> Callable[[], Tenant]:
    """A factory of fresh tenants with one key each, on the target's plan."""
    mirror = HeaderKeyMirror(target.header_key_plans) if target.header_key_plans else None

    def make() -> Tenant:
        tenant = admin.create_tenant(target.plan)
        if mirror is not None:
            mirror.add(tenant)
        return tenant

    return make


@pytest.fixture(scope="session")
def api_key(target: Target, request: pytest.FixtureRequest) -> str:
    """The key most tests call with: a fresh tenant's, or the one given in the environment."""
    if target.api_key:
        return target.api_key
    if target.admin_flags is None:
        pytest.skip("set AIMAAS_E2E_ADMIN (to create a key) or AIMAAS_E2E_API_KEY")
    make: Callable[[], Tenant] = request.getfixturevalue("new_tenant")
    return make().key


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        # Nothing of the test machine's proxy set-up applies to loopback or to the stage URL.
        session.trust_env = False
        yield session


@pytest.fixture(scope="session")
def call(http: requests.Session, target: Target, api_key: str) -> Callable[..., requests.Response]:
    """Call an API path with the session key in ``x-api-key`` (the header every target reads)."""

    def do(method: str, path: str, *, key: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"x-api-key": key or api_key, **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", target.timeout_s)
        return http.request(method, target.url(path), headers=headers, **kwargs)

    return do


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    """A real photo: scikit-image's ``chelsea`` (a tabby cat), as JPEG."""
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def spoken_yes() -> SpokenWord:
    """The keyword "yes" synthesised by espeak-ng now, after 0.8 s of silence (for the VAD)."""
    with tempfile.TemporaryDirectory() as tmp:
        samples, rate = espeak("yes", Path(tmp))
    padded = np.concatenate([np.zeros(int(0.8 * rate), dtype=np.int16), samples])
    start, end = speech_bounds(padded, rate)
    return SpokenWord(
        word="yes",
        wav=wav_bytes(padded, rate),
        rate=rate,
        duration_s=len(padded) / rate,
        speech_start_s=start,
        speech_end_s=end,
    )


@pytest.fixture(scope="session")
def published_models(target: Target) -> dict[str, set[str]]:
    """``{name: {version, ...}}`` of every manifest in the registry published to the target."""
    models: dict[str, set[str]] = {}
    for manifest in sorted(target.registry.glob("*/*/manifest.json")):
        document = json.loads(manifest.read_text())
        models.setdefault(document["name"], set()).add(document["version"])
    if not models:
        pytest.skip(f"no models in {target.registry} (make models)")
    return models
