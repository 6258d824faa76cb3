"""Shared fixtures of the speech tests: the built Whisper model and real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aimaas.manifest import ModelManifest
from aimaas_testing import audio
from aimaas_testing.paths import REGISTRY, REPO_ROOT

ROOT = REPO_ROOT


def built(name: str) -> Path:
    path = REGISTRY / name / "1.0.0"
    if not (path / "manifest.json").is_file():
        pytest.skip(f"{name} is not built in {REGISTRY}; run `make models`")
    return path


@pytest.fixture(scope="session")
def tiny_runner():
    from aimaas.inference.runners import load_runner

    folder = built("whisper-tiny-en")
    manifest = ModelManifest.model_validate_json((folder / "manifest.json").read_text())
    return load_runner(manifest, folder, threads=2)


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    return audio.beckett()
