"""The Whisper registry model (``make models``): manifest, integrity, and the gate that refuses
a broken ``model.bin``. Reads ``AIMAAS_REGISTRY`` (default ``build/registry``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aimaas import errors
from aimaas.manifest import SpeechPreprocessing
from aimaas.registry import ModelRegistry
from aimaas.registry.store import FolderStore
from aimaas_testing.paths import REGISTRY
from model_export.base import BuildContext
from model_export.models.whisper import GateFailure, WhisperTinyEnExporter, check_whisper
from model_export.registry import verify_entry

NAME = "whisper-tiny-en"


@pytest.fixture(scope="module")
def entry() -> Path:
    path = REGISTRY / NAME / "1.0.0"
    if not (path / "manifest.json").is_file():
        pytest.skip(f"{NAME} is not built in {REGISTRY}; run `make models`")
    return path


@pytest.fixture()
def copy(entry: Path, tmp_path: Path) -> Path:
    """A private copy of the registry entry, laid out as a one-model registry."""
    target = tmp_path / "registry" / NAME / "1.0.0"
    shutil.copytree(entry, target)
    return target


def test_the_manifest_describes_a_ctranslate2_speech_model(entry: Path) -> None:
    manifest = verify_entry(entry)  # every file against its sha256
    assert manifest.runtime == "ctranslate2"
    assert manifest.task == "automatic-speech-recognition"
    assert manifest.billing_unit == "audio_second"
    assert manifest.source.licence == "MIT"
    assert manifest.artifact.sha256 == WhisperTinyEnExporter.model_sha256
    assert isinstance(manifest.preprocessing, SpeechPreprocessing)
    assert manifest.preprocessing.languages == ["en"]
    assert {f.file for f in manifest.files} >= {"tokenizer.json", "silero_vad.onnx"}
    assert manifest.parity.metrics["beckett_wer"] <= manifest.parity.tolerances["max_beckett_wer"]


def test_a_truncated_model_fails_the_gate(copy: Path) -> None:
    weights = copy / "model.bin"
    with weights.open("r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    with pytest.raises(GateFailure, match="does not load"):
        check_whisper(NAME, copy, threads=1)


def test_a_corrupted_model_is_never_served(copy: Path) -> None:
    weights = copy / "model.bin"
    with weights.open("r+b") as handle:  # same size, different bytes in the middle
        handle.seek(weights.stat().st_size // 2)
        handle.write(b"\0" * 4096)
    registry = ModelRegistry(FolderStore(copy.parents[1]))
    manifest = registry.resolve(NAME)
    with pytest.raises(errors.BackendUnavailable) as refused:
        registry.verified_dir(manifest)
    assert refused.value.code == "model_integrity_error"


def test_the_export_refuses_weights_other_than_the_recorded_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = WhisperTinyEnExporter()
    monkeypatch.setattr(WhisperTinyEnExporter, "model_sha256", "0" * 64)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(GateFailure, match="sha256"):
        exporter.export(BuildContext(cache_dir=tmp_path / "cache"), out)
