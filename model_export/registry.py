"""Writing models into a registry folder: fingerprints, staging, atomic install.

Layout (see :mod:`aimaas.manifest`)::

    <registry>/<name>/<version>/manifest.json
    <registry>/<name>/<version>/model.onnx, tokenizer.json, ...
    <registry>/<name>/<version>/build-info.json   (fingerprint; used only to skip rebuilds)

A model is built in ``<registry>/.staging/`` and renamed into place only after its gate passed
and every file's sha256 matched its manifest, so a failed build leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import aimaas.preprocess
from aimaas.manifest import MANIFEST_FILENAME, ModelManifest, sha256_file
from model_export.base import BuildContext, ModelExporter

BUILD_INFO = "build-info.json"
_PACKAGE_DIR = Path(__file__).resolve().parent
_PREPROCESS_DIR = Path(aimaas.preprocess.__file__).resolve().parent
# Code shared by every exporter: a change here rebuilds everything.
_COMMON_FILES = ("base.py", "gates.py", "onnx_tools.py", "registry.py")
_TOOL_PACKAGES = ("torch", "onnx", "onnxruntime", "transformers", "tokenizers", "numpy")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def fingerprint(exporter: ModelExporter, seed: int = 0) -> str:
    """Hash of the code and configuration that produce ``exporter``'s artifact.

    Covers the shared pipeline modules, the preprocessing package, the exporter's own module,
    its :meth:`~model_export.base.ModelExporter.config`, the seed and the tool versions.
    """
    digest = hashlib.sha256()
    files = [_PACKAGE_DIR / name for name in _COMMON_FILES]
    files += sorted(_PREPROCESS_DIR.glob("*.py"))
    files += exporter.source_files()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    meta = {
        "name": exporter.name,
        "version": exporter.version,
        "config": exporter.config(),
        "seed": seed,
        "tools": {p: _version(p) for p in _TOOL_PACKAGES},
    }
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def entry_dir(registry: Path, name: str, version: str) -> Path:
    return registry / name / version


def verify_entry(directory: Path) -> ModelManifest:
    """Load and validate a registry entry, checking every file's size and sha256.

    Raises
    ------
    ValueError
        If the manifest is invalid or a file is missing or altered.
    """
    manifest = ModelManifest.model_validate_json((directory / MANIFEST_FILENAME).read_text())
    for ref in manifest.all_files:
        path = directory / ref.file
        if not path.is_file():
            raise ValueError(f"{manifest.model_id}: {ref.file} is missing")
        if path.stat().st_size != ref.size_bytes or sha256_file(path) != ref.sha256:
            raise ValueError(f"{manifest.model_id}: {ref.file} does not match its manifest")
    return manifest


def is_current(registry: Path, exporter: ModelExporter, print_: str) -> bool:
    """Whether ``exporter``'s entry exists, is intact and was built with fingerprint ``print_``."""
    directory = entry_dir(registry, exporter.name, exporter.version)
    try:
        info = json.loads((directory / BUILD_INFO).read_text())
        verify_entry(directory)
    except (OSError, ValueError):
        return False
    return info.get("fingerprint") == print_


@dataclass
class BuildResult:
    """Outcome of one model's build, for the CLI summary."""

    name: str
    status: str  # "built", "skipped" or "failed"
    seconds: float
    manifest: ModelManifest | None = None
    error: str | None = None


def install(registry: Path, staging: Path, manifest: ModelManifest, print_: str) -> Path:
    """Write the manifest into ``staging``, verify it and move it into the registry."""
    (staging / MANIFEST_FILENAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    verify_entry(staging)
    (staging / BUILD_INFO).write_text(
        json.dumps({"fingerprint": print_, "model_id": manifest.model_id}, indent=2) + "\n"
    )
    target = entry_dir(registry, manifest.name, manifest.version)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    staging.chmod(0o755)  # mkdtemp makes it private; the registry is read by other users
    staging.rename(target)
    return target


def build_one(
    exporter: ModelExporter, registry: Path, ctx: BuildContext, *, force: bool = False
) -> BuildResult:
    """Build one model unless its current entry is up to date; never raises for a gate."""
    started = time.perf_counter()
    print_ = fingerprint(exporter, ctx.seed)
    if not force and is_current(registry, exporter, print_):
        directory = entry_dir(registry, exporter.name, exporter.version)
        return BuildResult(exporter.name, "skipped", 0.0, verify_entry(directory))
    staging_root = registry / ".staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{exporter.name}-", dir=staging_root))
    try:
        ctx.seed_everything()
        manifest = exporter.export(ctx, staging)
        if manifest.name != exporter.name or manifest.version != exporter.version:
            raise ValueError(f"exporter {exporter.name} returned {manifest.model_id}")
        install(registry, staging, manifest, print_)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        return BuildResult(exporter.name, "failed", time.perf_counter() - started, error=f"{exc}")
    finally:
        if staging_root.exists() and not any(staging_root.iterdir()):
            staging_root.rmdir()
    return BuildResult(exporter.name, "built", time.perf_counter() - started, manifest)
