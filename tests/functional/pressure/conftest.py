"""Fixtures of the pressure tier (helpers live in ``support.py``)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from tests.functional.pressure.support import (
    REGISTRY,
    LiveServer,
    has_model,
    start_server,
    stop_server,
)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A local server with tenants ``a`` and ``b`` (both on the pro plan)."""
    if not has_model("all-minilm-l6-v2-int8"):
        pytest.skip(f"no model registry at {REGISTRY}; run `make models`")
    server = start_server(tmp_path_factory.mktemp("pressure-server"))
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def photo() -> bytes:
    """A real photo (scikit-image's chelsea the cat) as JPEG."""
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
