"""What the batch ports store: uploaded files, batch jobs, and the queue's chunk messages.

Records are storage-kit dataclasses (:class:`~aimaas.storage.Stored`), so the SQLite and
DynamoDB adapters map them with no mapper of their own. Ids are derived or random hex, never a
client's string, so no client input reaches a path or a key unchecked.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Self

from aimaas.storage import Stored

#: The statuses of a batch, as OpenAI names them.
VALIDATING, IN_PROGRESS, FINALIZING = "validating", "in_progress", "finalizing"
COMPLETED, FAILED, CANCELLING, CANCELLED = "completed", "failed", "cancelling", "cancelled"
EXPIRED = "expired"
#: A batch in one of these no longer changes.
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, EXPIRED})
#: A batch whose chunks may still run.
RUNNING = frozenset({VALIDATING, IN_PROGRESS})

_FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
_BATCH_ID = re.compile(r"^batch_[0-9a-f]{24}$")
_UPLOAD_ID = re.compile(r"^upload_[0-9a-f]{24}$")
_PART_ID = re.compile(r"^part_[0-9a-f]{24}$")


_WINDOW = re.compile(r"^([1-9][0-9]{0,3})h$")


def completion_window(value: str) -> timedelta:
    """The duration of a ``completion_window`` such as OpenAI's ``"24h"``.

    Raises
    ------
    ValueError
        ``value`` is not a whole number of hours.
    """
    match = _WINDOW.match(value)
    if match is None:
        raise ValueError(f"not a completion window: {value!r}")
    return timedelta(hours=int(match.group(1)))


def new_file_id() -> str:
    """A fresh, unguessable file id (``file-`` + 24 hex digits)."""
    return "file-" + secrets.token_hex(12)


def new_batch_id() -> str:
    """A fresh batch id whose first 12 hex digits are the time in ms: ids sort by creation, so
    the job store lists newest first from its key alone."""
    return f"batch_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def is_file_id(value: str) -> bool:
    """True for a string of the file-id form (checked before any store lookup)."""
    return bool(_FILE_ID.match(value))


def is_batch_id(value: str) -> bool:
    """True for a string of the batch-id form."""
    return bool(_BATCH_ID.match(value))


def new_upload_id() -> str:
    """A fresh upload id (``upload_`` + 24 hex digits), as OpenAI's Uploads API names them."""
    return "upload_" + secrets.token_hex(12)


def new_part_id() -> str:
    """A fresh upload part id (``part_`` + 24 hex digits)."""
    return "part_" + secrets.token_hex(12)


def is_upload_id(value: str) -> bool:
    """True for a string of the upload-id form."""
    return bool(_UPLOAD_ID.match(value))


def is_part_id(value: str) -> bool:
    """True for a string of the upload-part-id form."""
    return bool(_PART_ID.match(value))


def derived_file_id(batch_id: str, kind: str) -> str:
    """The id of a batch's output (``kind="output"``) or error file: derived from the batch, so
    a finalisation that runs twice (a redelivered last chunk) writes the same file, not two."""
    return "file-" + hashlib.sha256(f"{batch_id}\0{kind}".encode()).hexdigest()[:24]


def line_request_id(batch_id: str, custom_id: str) -> str:
    """The usage ledger's idempotency key of one batch line: the same line of the same batch
    always gets the same id, so a redelivered chunk finds its lines already billed."""
    digest = hashlib.sha256(f"{batch_id}\0{custom_id}".encode()).hexdigest()[:32]
    return f"{batch_id}-{digest}"


@dataclass(frozen=True)
class FileRecord(Stored):
    """An uploaded (or batch-written) file's metadata; its bytes are in the file store."""

    file_id: str
    tenant_id: str
    filename: str
    purpose: str  # batch (uploads), batch_output (written by the worker)
    size: int  # bytes
    created_at: datetime


@dataclass(frozen=True)
class UploadRecord(Stored):
    """An upload in progress (OpenAI's Uploads API): a file sent in parts through the API, or
    put by the client straight into the file store at a presigned URL, then completed into a
    :class:`FileRecord` (``file_id``)."""

    upload_id: str
    tenant_id: str
    filename: str
    purpose: str
    size: int  # bytes the client declared; the completed file must have exactly these
    mime_type: str
    status: str  # pending, completed, cancelled
    created_at: datetime
    expires_at: datetime
    file_id: str | None = None

    def with_changes(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


@dataclass(frozen=True)
class BatchJob(Stored):
    """One batch job and its progress.

    ``chunks`` is how many queue messages the input was split into; ``chunks_done`` counts those
    whose results are written and counted (each once: the job store refuses a chunk twice).
    """

    batch_id: str
    tenant_id: str
    key_id: str
    plan: str
    input_file_id: str
    endpoint: str
    completion_window: str
    status: str
    created_at: datetime
    expires_at: datetime
    chunks: int = 0
    chunks_done: int = 0
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: datetime | None = None
    finalizing_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    cancelling_at: datetime | None = None
    cancelled_at: datetime | None = None
    #: Set by the first chunk that finds the completion window passed; the batch then ends
    #: ``expired`` (its unrun lines in the error file as ``batch_expired``).
    expired_at: datetime | None = None
    errors: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = field(default=None)

    @property
    def deadline(self) -> datetime:
        """When the completion window ends (lines not run by then expire)."""
        return self.created_at + completion_window(self.completion_window)

    def with_changes(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Chunk:
    """One queue message: lines ``[start, stop)`` of a batch's input file, which are its bytes
    ``[offset, offset + length)`` (``length`` -1: unknown, the worker reads the whole file)."""

    tenant_id: str
    batch_id: str
    index: int
    start: int
    stop: int
    offset: int = 0
    length: int = -1

    def to_message(self) -> dict[str, Any]:
        """The message body (JSON-ready)."""
        return {
            "tenant_id": self.tenant_id,
            "batch_id": self.batch_id,
            "index": self.index,
            "start": self.start,
            "stop": self.stop,
            "offset": self.offset,
            "length": self.length,
        }

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Chunk:
        """Read a message written by :meth:`to_message`."""
        return cls(
            tenant_id=str(message["tenant_id"]),
            batch_id=str(message["batch_id"]),
            index=int(message["index"]),
            start=int(message["start"]),
            stop=int(message["stop"]),
            offset=int(message.get("offset", 0)),
            length=int(message.get("length", -1)),
        )
