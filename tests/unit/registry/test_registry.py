"""Model store and registry: version order, lazy manifests, sha256 checks, S3 (moto)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from aimaas import errors
from aimaas.config import Settings
from aimaas.manifest import MANIFEST_FILENAME, ModelManifest, file_ref
from aimaas.registry import FolderStore, ModelRegistry, S3Store
from aimaas.wiring import build_model_store
from aimaas_testing.paths import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
SOURCE = "mobilenet-v2"  # any real exported model: its manifest is the template


def _write_version(root: Path, name: str, version: str, artifact: bytes) -> ModelManifest:
    """A registry entry built from a real manifest, renamed and re-versioned."""
    template_dir = REGISTRY / SOURCE
    template_version = sorted(p.name for p in template_dir.iterdir())[-1]
    template = json.loads((template_dir / template_version / MANIFEST_FILENAME).read_text())
    folder = root / name / version
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(artifact)
    template.update(
        name=name, version=version, artifact=file_ref(folder / "model.onnx").model_dump(), files=[]
    )
    manifest = ModelManifest.model_validate(template)
    (folder / MANIFEST_FILENAME).write_text(manifest.model_dump_json())
    return manifest


@pytest.fixture
def store(tmp_path: Path) -> FolderStore:
    for version in ("1.2.0", "1.10.0", "1.9.3"):
        _write_version(tmp_path, "demo-model", version, f"weights {version}".encode())
    _write_version(tmp_path, "other-model", "1.0.0", b"other")
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "demo-model" / "scratch").mkdir()  # no manifest: not a version
    return FolderStore(tmp_path)


def test_versions_are_sorted_numerically_and_newest_is_default(store: FolderStore) -> None:
    registry = ModelRegistry(store)
    assert store.names() == ["demo-model", "other-model"]
    assert registry.versions("demo-model") == ["1.2.0", "1.9.3", "1.10.0"]
    assert registry.resolve("demo-model").version == "1.10.0"
    assert registry.resolve("demo-model", "1.2.0").version == "1.2.0"
    assert registry.resolve("demo-model@1.9.3").version == "1.9.3"  # as responses name models


@pytest.mark.parametrize(
    ("name", "version"),
    [("missing", None), ("demo-model", "9.9.9"), ("../demo-model", None), ("demo-model", "../x")],
)
def test_unknown_models_and_versions_are_not_found(
    store: FolderStore, name: str, version: str | None
) -> None:
    with pytest.raises(errors.NotFound):
        ModelRegistry(store).resolve(name, version)


def test_task_defaults_and_task_mismatch(store: FolderStore) -> None:
    registry = ModelRegistry(store, {"image-classification": "demo-model"})
    assert registry.default("image-classification").name == "demo-model"
    with pytest.raises(errors.NotFound):
        registry.default("embeddings")
    with pytest.raises(errors.InvalidInput):
        registry.resolve_for_task("embeddings", "demo-model", None)


def test_verified_dir_accepts_intact_files_and_refuses_tampered_ones(store: FolderStore) -> None:
    registry = ModelRegistry(store)
    intact = registry.resolve("demo-model", "1.2.0")
    assert registry.verified_dir(intact) == store.root / "demo-model" / "1.2.0"
    tampered = registry.resolve("demo-model", "1.9.3")
    path = store.root / "demo-model" / "1.9.3" / "model.onnx"
    path.write_bytes(b"weights 1.9.X")  # same size, different bytes
    with pytest.raises(errors.BackendUnavailable) as caught:
        registry.verified_dir(tampered)
    assert caught.value.code == "model_integrity_error"
    path.unlink()
    with pytest.raises(errors.BackendUnavailable):
        registry.verified_dir(tampered)


def test_invalid_manifest_is_a_backend_error_not_a_crash(store: FolderStore) -> None:
    (store.root / "other-model" / "1.0.0" / MANIFEST_FILENAME).write_text("{not json")
    with pytest.raises(errors.BackendUnavailable):
        ModelRegistry(store).resolve("other-model")


def test_build_store_by_name(tmp_path: Path) -> None:
    assert isinstance(build_model_store(Settings(registry_path=tmp_path)), FolderStore)
    with pytest.raises(ValueError, match="unknown model store"):
        build_model_store(Settings(model_store="ftp"))
    with pytest.raises(ValueError, match="MODEL_BUCKET"):
        build_model_store(Settings(model_store="s3"))


@mock_aws
def test_s3_store_lists_downloads_once_and_verifies(store: FolderStore, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    for path in store.root.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "models", f"registry/{path.relative_to(store.root)}")
    remote = S3Store("models", "registry", tmp_path / "cache", client=s3)
    registry = ModelRegistry(remote)
    assert remote.names() == ["demo-model", "other-model"]
    assert registry.versions("demo-model") == ["1.2.0", "1.9.3", "1.10.0"]
    manifest = registry.resolve("demo-model")
    folder = registry.verified_dir(manifest)
    assert (folder / "model.onnx").read_bytes() == b"weights 1.10.0"
    with pytest.raises(errors.NotFound):
        registry.resolve("demo-model", "3.0.0")
    # A corrupted object in S3 is downloaded but never served.
    s3.put_object(
        Bucket="models", Key="registry/demo-model/1.2.0/model.onnx", Body=b"weights 1.2.X"
    )
    with pytest.raises(errors.BackendUnavailable):
        registry.verified_dir(registry.resolve("demo-model", "1.2.0"))


def test_s3_store_outage_is_backend_unavailable(tmp_path: Path) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")  # bucket never created
        with pytest.raises(errors.BackendUnavailable):
            S3Store("absent", "", tmp_path, client=s3).versions("demo-model")


def test_registry_copy_is_independent_of_source(store: FolderStore, tmp_path: Path) -> None:
    # Manifests are cached per registry: a new registry sees a newly published version.
    registry = ModelRegistry(store)
    assert registry.resolve("other-model").version == "1.0.0"
    shutil.copytree(store.root / "other-model" / "1.0.0", store.root / "other-model" / "1.1.0")
    data = json.loads((store.root / "other-model" / "1.1.0" / MANIFEST_FILENAME).read_text())
    data["version"] = "1.1.0"
    (store.root / "other-model" / "1.1.0" / MANIFEST_FILENAME).write_text(json.dumps(data))
    assert ModelRegistry(store).resolve("other-model").version == "1.1.0"
