"""The three ports of batch jobs: a file store, a job store and a work queue.

Every store method takes the tenant: a file or batch is only ever found under its owner, so
another tenant's lookup finds nothing (the API answers 404 and leaks no existence).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from aimaas.batch.records import BatchJob, Chunk, FileRecord


class FileStore(ABC):
    """Where uploaded files, batch outputs and the worker's partial results live."""

    @abstractmethod
    def put(self, record: FileRecord, data: bytes) -> None:
        """Store ``data`` as the file ``record`` describes (replacing one with the same id).

        Raises
        ------
        aimaas.errors.BackendUnavailable
            The store cannot be written.
        """

    @abstractmethod
    def get(self, tenant_id: str, file_id: str) -> FileRecord | None:
        """The tenant's file metadata (None if the tenant has no such file)."""

    @abstractmethod
    def content(self, tenant_id: str, file_id: str) -> bytes | None:
        """The tenant's file bytes (None if the tenant has no such file)."""

    def read_range(self, tenant_id: str, file_id: str, offset: int, length: int) -> bytes | None:
        """Bytes ``[offset, offset + length)`` of the tenant's file (None if it has no such
        file); adapters override this to read only those bytes."""
        data = self.content(tenant_id, file_id)
        return None if data is None else data[offset : offset + length]

    @abstractmethod
    def put_part(self, tenant_id: str, batch_id: str, name: str, data: bytes) -> None:
        """Store one partial result of a batch (a chunk's output or errors), by name; also an
        upload's parts and state, under the upload id in place of ``batch_id``."""

    @abstractmethod
    def part(self, tenant_id: str, batch_id: str, name: str) -> bytes | None:
        """A partial result written by :meth:`put_part` (None if there is none)."""

    def presign_upload(
        self, tenant_id: str, upload_id: str, size: int, expires_s: int
    ) -> tuple[str, dict[str, str]] | None:
        """A URL, and the headers to send with it, where the client PUTs an upload's bytes
        itself, past the API's request body limit; None when the store has no such URL (the
        client then sends the upload in parts through the API).

        Raises
        ------
        aimaas.errors.BackendUnavailable
            The URL cannot be signed.
        """
        return None

    def adopt_upload(self, record: FileRecord, upload_id: str) -> bool:
        """Make the bytes PUT at :meth:`presign_upload`'s URL the file ``record`` describes.

        Returns
        -------
        bool
            False when nothing was PUT there or its size is not ``record.size``.
        """
        return False

    def close(self) -> None:  # noqa: B027 - optional hook: most adapters hold nothing open
        """Release connections."""


class JobStore(ABC):
    """Batch job records, with the two conditional writes the engine relies on."""

    @abstractmethod
    def create(self, job: BatchJob) -> None:
        """Store a new job (its id is fresh: never an overwrite)."""

    @abstractmethod
    def get(self, tenant_id: str, batch_id: str) -> BatchJob | None:
        """The tenant's job (None if the tenant has none of that id)."""

    @abstractmethod
    def list(self, tenant_id: str, limit: int, after: str | None = None) -> list[BatchJob]:
        """The tenant's jobs, newest first, at most ``limit``, older than ``after`` if given."""

    @abstractmethod
    def transition(
        self, tenant_id: str, batch_id: str, allowed: frozenset[str], **changes: Any
    ) -> BatchJob | None:
        """Apply ``changes`` only if the job's status is one of ``allowed`` (atomically).

        Returns
        -------
        BatchJob or None
            The updated job; None when the job is missing or in another status (someone else
            moved it first: a cancel racing the last chunk, a finalisation run twice).
        """

    @abstractmethod
    def chunk_counted(self, tenant_id: str, batch_id: str, index: int) -> bool:
        """Whether chunk ``index`` was counted by :meth:`finish_chunk` already."""

    @abstractmethod
    def finish_chunk(
        self, tenant_id: str, batch_id: str, index: int, completed: int, failed: int
    ) -> BatchJob | None:
        """Count chunk ``index`` once: add its line counts and one to ``chunks_done``.

        Returns
        -------
        BatchJob or None
            The job after the update; None when this chunk was already counted (a redelivered
            message), in which case nothing changes.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


#: What a queue delivers a message to.
Handler = Callable[[Chunk], None]


class WorkQueue(ABC):
    """Carries chunk messages from the API to the worker, at least once."""

    @abstractmethod
    def send(self, chunks: list[Chunk]) -> None:
        """Enqueue ``chunks``.

        Raises
        ------
        aimaas.errors.BackendUnavailable
            The queue cannot take them.
        """

    def poll(self, handler: Handler, *, wait_s: int = 1, max_messages: int = 10) -> int:
        """Receive up to ``max_messages`` messages, run ``handler`` on each and acknowledge
        those it handled (a worker polling from a host); one that raises is redelivered later.

        Returns
        -------
        int
            Messages handled.
        """
        raise NotImplementedError(f"{type(self).__name__} delivers only to its own threads")

    def start(self, handler: Handler) -> None:  # noqa: B027 - a queue consumed elsewhere
        """Deliver messages to ``handler`` in this process (local queues; in AWS, Lambda's
        event source mapping delivers them to the worker function instead)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop delivering and release resources."""
