"""The model store port: where manifests and model files live (a folder or S3).

A store answers three questions: which model names exist, which versions a name has, and where
on the local disk a version's files are (an S3 store downloads them into its cache first). It
does not verify integrity: :class:`aimaas.registry.ModelRegistry` does that once, on load.
"""

from __future__ import annotations

import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aimaas import errors
from aimaas.manifest import MANIFEST_FILENAME, ModelManifest, is_version, version_key


class ModelStore(ABC):
    """Read access to a registry laid out as ``<name>/<version>/{manifest.json, files...}``."""

    @abstractmethod
    def names(self) -> list[str]:
        """Every model name in the store, sorted."""

    @abstractmethod
    def versions(self, name: str) -> list[str]:
        """The versions of ``name``, oldest first (empty when the name is unknown)."""

    @abstractmethod
    def read_manifest(self, name: str, version: str) -> ModelManifest:
        """Parse the manifest of one version.

        Raises
        ------
        aimaas.errors.NotFound
            When the version does not exist.
        """

    @abstractmethod
    def local_dir(self, manifest: ModelManifest) -> Path:
        """A local folder holding every file of ``manifest`` (downloaded if needed)."""

    def discard(self, manifest: ModelManifest) -> None:  # noqa: B027 - a folder has no cache
        """Forget local copies of ``manifest``'s files (they failed verification)."""


def _parse_manifest(raw: bytes | str, where: str) -> ModelManifest:
    try:
        return ModelManifest.model_validate(json.loads(raw))
    except ValueError as exc:  # JSON or schema error: the artifact is broken, not the request
        raise errors.BackendUnavailable(f"The manifest of {where} is invalid.") from exc


class FolderStore(ModelStore):
    """A registry folder on the local disk (local mode, tests, the Lambda image)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        folder = self.root / name
        if "/" in name or name.startswith(".") or not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if (p / MANIFEST_FILENAME).is_file()]
        valid = [v for v in found if is_version(v)]
        return sorted(valid, key=version_key)

    def read_manifest(self, name: str, version: str) -> ModelManifest:
        if version not in self.versions(name):
            raise errors.NotFound(f"Model {name!r} has no version {version!r}.")
        path = self.root / name / version / MANIFEST_FILENAME
        return _parse_manifest(path.read_bytes(), f"{name}@{version}")

    def local_dir(self, manifest: ModelManifest) -> Path:
        return self.root / manifest.name / manifest.version


class S3Store(ModelStore):
    """A registry under ``s3://bucket/prefix``, files cached in ``cache_dir`` (Lambda's /tmp).

    Parameters
    ----------
    bucket, prefix
        Where the registry layout starts.
    cache_dir
        Local folder that files are downloaded into, once per container.
    client
        A boto3 S3 client; created lazily so importing this module never imports boto3.
    """

    def __init__(
        self, bucket: str, prefix: str, cache_dir: Path, client: Any | None = None
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        self.cache_dir = Path(cache_dir)
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # deferred: a folder-store cold start never pays for boto3

            self._client = boto3.client("s3")
        return self._client

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise errors.NotFound("The model file was not found in the store.") from exc
            raise errors.BackendUnavailable("The model store cannot be read right now.") from exc
        except BotoCoreError as exc:
            raise errors.BackendUnavailable("The model store cannot be read right now.") from exc

    def _common_prefixes(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        found: list[str] = []
        pages = self._call(
            lambda **kw: list(paginator.paginate(**kw)),
            Bucket=self.bucket,
            Prefix=prefix,
            Delimiter="/",
        )
        for page in pages:
            for entry in page.get("CommonPrefixes", []):
                found.append(entry["Prefix"][len(prefix) :].rstrip("/"))
        return found

    def names(self) -> list[str]:
        return sorted(n for n in self._common_prefixes(self.prefix) if self.versions(n))

    def versions(self, name: str) -> list[str]:
        if "/" in name or not name:
            return []
        found = self._common_prefixes(f"{self.prefix}{name}/")
        return sorted((v for v in found if is_version(v)), key=version_key)

    def read_manifest(self, name: str, version: str) -> ModelManifest:
        key = f"{self.prefix}{name}/{version}/{MANIFEST_FILENAME}"
        if not is_version(version) or "/" in name:
            raise errors.NotFound(f"Model {name!r} has no version {version!r}.")
        try:
            body = self._call(self.client.get_object, Bucket=self.bucket, Key=key)["Body"].read()
        except errors.NotFound as exc:
            raise errors.NotFound(f"Model {name!r} has no version {version!r}.") from exc
        return _parse_manifest(body, f"{name}@{version}")

    def local_dir(self, manifest: ModelManifest) -> Path:
        target = self.cache_dir / manifest.name / manifest.version
        with self._lock:
            target.mkdir(parents=True, exist_ok=True)
            for ref in manifest.all_files:
                path = target / ref.file
                if path.is_file() and path.stat().st_size == ref.size_bytes:
                    continue
                partial = path.with_name(f".{ref.file}.{os.getpid()}.part")
                key = f"{self.prefix}{manifest.name}/{manifest.version}/{ref.file}"
                self._call(
                    self.client.download_file, Bucket=self.bucket, Key=key, Filename=str(partial)
                )
                partial.replace(path)  # atomic: a crash never leaves a half file under its name
        return target

    def discard(self, manifest: ModelManifest) -> None:
        # A bad download (or a bad object since replaced) must not stick for the container's life.
        with self._lock:
            _unlink_all(self.cache_dir / manifest.name / manifest.version)


def _unlink_all(folder: Path) -> None:
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)
