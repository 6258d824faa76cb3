"""The model registry: resolves ``name[@version]`` to a manifest and verified local files."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from aimaas import errors
from aimaas.manifest import (
    NAME_RULE,
    ModelManifest,
    Task,
    is_model_name,
    is_version,
    sha256_file,
)
from aimaas.registry.store import ModelStore


class ModelRegistry:
    """Manifests and verified files of the models a store holds.

    Manifests are read on first use and cached; files are checked against the manifest's sha256
    once per process, when a backend first loads the model, so a cold start pays only for the
    model that was asked for.

    Parameters
    ----------
    store
        Where manifests and files live.
    default_models
        Task -> model name used when a request does not name a model (from ``stages.toml``).
    """

    def __init__(self, store: ModelStore, default_models: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.default_models = dict(default_models or {})
        self._manifests: dict[tuple[str, str], ModelManifest] = {}
        self._latest: dict[str, str] = {}
        self._verified: dict[tuple[str, str], Path] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Every model name in the store."""
        return self.store.names()

    def versions(self, name: str) -> list[str]:
        """Versions of ``name``, oldest first."""
        return self.store.versions(name)

    def resolve(self, name: str, version: str | None = None) -> ModelManifest:
        """The manifest of ``name`` at ``version`` (the newest version when None).

        Raises
        ------
        aimaas.errors.NotFound
            Unknown model or version.
        """
        if version is None and "@" in name:  # "name@version", as responses report models
            name, version = name.split("@", 1)
        # Checked before any store is touched: a 256-character name made the folder store's
        # file system answer "File name too long" (a 500).
        if not is_model_name(name):
            raise errors.NotFound(
                f"Unknown model {_shown(name)}: model names are {NAME_RULE}; "
                "GET /v1/models lists the models."
            )
        if version is not None and not is_version(version):
            raise errors.NotFound(
                f"Model {name!r} has no version {_shown(version)}: versions are MAJOR.MINOR.PATCH."
            )
        if version is None:
            version = self._latest.get(name)
            if version is None:
                versions = self.store.versions(name)
                if not versions:
                    raise errors.NotFound(
                        f"Unknown model {name!r}; GET /v1/models lists the models."
                    )
                version = self._latest.setdefault(name, versions[-1])
        key = (name, version)
        cached = self._manifests.get(key)
        if cached is not None:
            return cached
        manifest = self.store.read_manifest(name, version)
        return self._manifests.setdefault(key, manifest)

    def default(self, task: Task) -> ModelManifest:
        """The stage's default model for ``task``."""
        name = self.default_models.get(task)
        if name is None:
            raise errors.NotFound(f"No default model is configured for task {task!r}.")
        return self.resolve(name)

    def resolve_for_task(self, task: Task, name: str | None, version: str | None) -> ModelManifest:
        """Resolve ``name`` (or the task's default) and check that it serves ``task``."""
        manifest = self.default(task) if name is None else self.resolve(name, version)
        if name is None and version is not None:
            manifest = self.resolve(manifest.name, version)
        if manifest.task != task:
            raise errors.InvalidInput(
                f"Model {manifest.name!r} serves {manifest.task!r}, not {task!r}."
            )
        return manifest

    def verified_dir(self, manifest: ModelManifest) -> Path:
        """The local folder of ``manifest``'s files, each checked against its sha256.

        Raises
        ------
        aimaas.errors.BackendUnavailable
            A file is missing, has the wrong size or the wrong hash: it is never served.
        """
        key = (manifest.name, manifest.version)
        done = self._verified.get(key)
        if done is not None:
            return done
        with self._lock:
            folder = self.store.local_dir(manifest)
            for ref in manifest.all_files:
                path = folder / ref.file
                if (
                    not path.is_file()
                    or path.stat().st_size != ref.size_bytes
                    or sha256_file(path) != ref.sha256
                ):
                    self.store.discard(manifest)  # a cache re-fetches next time
                    raise errors.BackendUnavailable(
                        f"Model {manifest.model_id} failed its integrity check and is not served.",
                        code="model_integrity_error",
                    )
            self._verified[key] = folder
        return folder


def _shown(text: str, limit: int = 64) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
