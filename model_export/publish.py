"""Publishing a registry folder to S3: same ``<prefix><name>/<version>/`` layout, SSE-KMS.

Every file is checked against the sha256 in its manifest before upload, and each model's
``manifest.json`` is uploaded last, so a reader never finds a manifest whose files are not
there yet. The bucket must be versioned: an artifact overwritten by mistake stays recoverable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aimaas.manifest import MANIFEST_FILENAME
from model_export.registry import verify_entry


class PublishError(RuntimeError):
    """The registry or the bucket is not fit to publish to."""


def registry_entries(registry: Path) -> list[Path]:
    """Folders ``<registry>/<name>/<version>`` that hold a manifest, sorted.

    Dot folders are the builder's scratch space (``.staging``: an interrupted build can leave a
    manifest there) and never part of the registry, as the serving ``FolderStore`` agrees.
    """
    return sorted(
        path.parent
        for path in registry.glob(f"*/*/{MANIFEST_FILENAME}")
        if not path.relative_to(registry).parts[0].startswith(".")
    )


def publish_registry(
    registry: Path,
    client: Any,
    bucket: str,
    *,
    prefix: str = "models/",
    kms_key_id: str | None = None,
) -> list[str]:
    """Upload every verified registry entry to ``s3://bucket/prefix``.

    Parameters
    ----------
    registry
        The registry folder written by ``model_export build``.
    client
        A boto3 S3 client.
    bucket
        Target bucket; must have versioning enabled.
    prefix
        Key prefix (``"models/"``); a trailing slash is added when missing.
    kms_key_id
        KMS key id or ARN for SSE-KMS; the bucket's default KMS key when ``None``.

    Returns
    -------
    list[str]
        The keys written, manifests last within each model version.

    Raises
    ------
    PublishError
        When the bucket is not versioned or the registry holds nothing to publish.
    ValueError
        When a file does not match its manifest (nothing of that model is uploaded).
    """
    status = client.get_bucket_versioning(Bucket=bucket).get("Status")
    if status != "Enabled":
        raise PublishError(f"bucket {bucket} is not versioned (status {status}); refusing")
    entries = registry_entries(registry)
    if not entries:
        raise PublishError(f"no manifests under {registry}; run `model_export build` first")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    encryption: dict[str, str] = {"ServerSideEncryption": "aws:kms"}
    if kms_key_id:
        encryption["SSEKMSKeyId"] = kms_key_id
    keys: list[str] = []
    for directory in entries:
        manifest = verify_entry(directory)  # sha256 of every file, before anything is sent
        base = f"{prefix}{manifest.name}/{manifest.version}/"
        for ref in manifest.all_files:
            key = base + ref.file
            client.upload_file(
                str(directory / ref.file),
                bucket,
                key,
                ExtraArgs={**encryption, "Metadata": {"sha256": ref.sha256}},
            )
            keys.append(key)
        key = base + MANIFEST_FILENAME
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=(directory / MANIFEST_FILENAME).read_bytes(),
            ContentType="application/json",
            **encryption,
        )
        keys.append(key)
    return keys
