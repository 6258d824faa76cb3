"""OpenAI's Uploads API on the batch file store: files larger than one request body.

An upload is created with its name, purpose and size; its bytes then come either in parts
through the API (``POST /v1/uploads/{id}/parts``, each part within the request body limit:
every file store takes them) or in one PUT by the client to a presigned URL where the store has
one (S3: past the API entirely, up to 5 GB). Completing it makes one file of the declared size
(parts joined in the order the client lists them, or the PUT object copied into place), which a
batch then takes by its id like any uploaded file. State lives in the file store beside the
parts, so uploads need no store of their own.
"""

from __future__ import annotations

import json
from datetime import timedelta

from aimaas import errors
from aimaas.api.container import Container
from aimaas.batch.jobs import services
from aimaas.batch.records import (
    FileRecord,
    UploadRecord,
    is_part_id,
    is_upload_id,
    new_file_id,
    new_part_id,
    new_upload_id,
)
from aimaas.storage import now_utc

#: Largest upload (OpenAI's limit for a batch input file).
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
#: How long an upload may stay pending (OpenAI's: an hour); its presigned URL lives as long.
UPLOAD_TTL = timedelta(hours=1)
PENDING, COMPLETED, CANCELLED = "pending", "completed", "cancelled"
_STATE = "upload.json"


def _save(container: Container, upload: UploadRecord) -> None:
    data = json.dumps(upload.to_row()).encode()
    services(container).files.put_part(upload.tenant_id, upload.upload_id, _STATE, data)


def get_upload(container: Container, tenant_id: str, upload_id: str) -> UploadRecord:
    """The tenant's upload.

    Raises
    ------
    aimaas.errors.NotFound
        The tenant has no such upload (another tenant's is not found either).
    """
    data = None
    if is_upload_id(upload_id):
        data = services(container).files.part(tenant_id, upload_id, _STATE)
    if data is None:
        raise errors.NotFound("No upload with that id.")
    return UploadRecord.from_row(json.loads(data))


def _pending(container: Container, tenant_id: str, upload_id: str) -> UploadRecord:
    upload = get_upload(container, tenant_id, upload_id)
    if upload.status != PENDING:
        raise errors.InvalidInput(f"The upload is {upload.status}.")
    if now_utc() >= upload.expires_at:
        raise errors.InvalidInput("The upload expired; create another.")
    return upload


def create_upload(
    container: Container, tenant_id: str, filename: str, purpose: str, size: int, mime_type: str
) -> tuple[UploadRecord, tuple[str, dict[str, str]] | None]:
    """Start an upload; with it, the presigned PUT (URL, headers) if the store has one.

    Raises
    ------
    aimaas.errors.InvalidInput
        Not the batch purpose, or a size out of range.
    """
    if purpose != "batch":
        raise errors.InvalidInput("purpose must be 'batch' (the only purpose served here).")
    if not 0 < size <= MAX_UPLOAD_BYTES:
        raise errors.InvalidInput(f"bytes must be between 1 and {MAX_UPLOAD_BYTES}.")
    now = now_utc()
    upload = UploadRecord(
        upload_id=new_upload_id(),
        tenant_id=tenant_id,
        filename=filename[-200:],
        purpose=purpose,
        size=size,
        mime_type=mime_type[:100],
        status=PENDING,
        created_at=now,
        expires_at=now + UPLOAD_TTL,
    )
    _save(container, upload)
    ttl = int(UPLOAD_TTL.total_seconds())
    return upload, services(container).files.presign_upload(tenant_id, upload.upload_id, size, ttl)


def add_part(container: Container, tenant_id: str, upload_id: str, data: bytes) -> str:
    """Store one part of a pending upload; its part id."""
    upload = _pending(container, tenant_id, upload_id)
    if not data:
        raise errors.InvalidInput("The part is empty.")
    if len(data) > upload.size:
        raise errors.InvalidInput("The part is larger than the whole upload.")
    part_id = new_part_id()
    services(container).files.put_part(tenant_id, upload_id, part_id, data)
    return part_id


def complete_upload(
    container: Container, tenant_id: str, upload_id: str, part_ids: list[str]
) -> UploadRecord:
    """Make the upload's file: its parts joined in ``part_ids`` order, or (no part ids) the
    bytes the client PUT at the presigned URL. Completing a completed upload answers it again.

    Raises
    ------
    aimaas.errors.InvalidInput
        An unknown part, or bytes that do not add up to the declared size.
    """
    upload = get_upload(container, tenant_id, upload_id)
    if upload.status == COMPLETED:
        return upload  # a client retrying a complete whose answer it lost
    upload = _pending(container, tenant_id, upload_id)
    files = services(container).files
    record = FileRecord(
        file_id=new_file_id(),
        tenant_id=tenant_id,
        filename=upload.filename,
        purpose=upload.purpose,
        size=upload.size,
        created_at=now_utc(),
    )
    if part_ids:
        parts = []
        for part_id in part_ids:
            data = files.part(tenant_id, upload_id, part_id) if is_part_id(part_id) else None
            if data is None:
                raise errors.InvalidInput(f"No part {part_id[:40]!r} in this upload.")
            parts.append(data)
        data = b"".join(parts)
        if len(data) != upload.size:
            raise errors.InvalidInput(
                f"The parts hold {len(data)} bytes; the upload declared {upload.size}."
            )
        files.put(record, data)
    elif not files.adopt_upload(record, upload_id):
        raise errors.InvalidInput(
            f"No part ids, and no object of {upload.size} bytes was PUT at the upload URL."
        )
    done = upload.with_changes(status=COMPLETED, file_id=record.file_id)
    _save(container, done)
    return done


def cancel_upload(container: Container, tenant_id: str, upload_id: str) -> UploadRecord:
    """Cancel a pending upload (its parts are never made a file)."""
    upload = _pending(container, tenant_id, upload_id)
    cancelled = upload.with_changes(status=CANCELLED)
    _save(container, cancelled)
    return cancelled
