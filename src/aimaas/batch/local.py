"""Local batch adapters: files in a folder, jobs in SQLite, a worker thread as the queue.

They are what ``make serve`` wires in, so a customer can try the Batch API on a laptop with the
same job format the AWS engine uses (chunk messages, per-chunk counting, derived output ids).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from aimaas import errors
from aimaas.batch.ports import FileStore, Handler, JobStore, WorkQueue
from aimaas.batch.records import (
    BatchJob,
    Chunk,
    FileRecord,
    is_batch_id,
    is_file_id,
    is_upload_id,
)
from aimaas.storage import SqliteDatabase
from aimaas.storage.sqlite import insert, update

logger = logging.getLogger("aimaas.batch")


def _tenant_folder(tenant_id: str) -> str:
    # A hash, so no tenant id (a client-visible string in some setups) ever reaches a path.
    return hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(staging, path)  # a reader sees the old file or the new one, never half of one


class FolderFileStore(FileStore):
    """Files under ``root/<tenant hash>/``: ``<id>.json`` (metadata) and ``<id>.data``.

    Parameters
    ----------
    root
        The store's folder (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, tenant_id: str, file_id: str, suffix: str) -> Path | None:
        if not is_file_id(file_id):  # never let a client's string reach a path
            return None
        return self.root / _tenant_folder(tenant_id) / f"{file_id}{suffix}"

    def put(self, record: FileRecord, data: bytes) -> None:
        meta = self._path(record.tenant_id, record.file_id, ".json")
        body = self._path(record.tenant_id, record.file_id, ".data")
        if meta is None or body is None:
            raise ValueError(f"not a file id: {record.file_id!r}")
        try:
            _write_atomically(body, data)  # bytes first: metadata is the file's existence
            _write_atomically(meta, json.dumps(record.to_row()).encode())
        except OSError as error:
            raise errors.BackendUnavailable("The file store cannot be written.") from error

    def get(self, tenant_id: str, file_id: str) -> FileRecord | None:
        meta = self._path(tenant_id, file_id, ".json")
        if meta is None or not meta.is_file():
            return None
        return FileRecord.from_row(json.loads(meta.read_text()))

    def content(self, tenant_id: str, file_id: str) -> bytes | None:
        if self.get(tenant_id, file_id) is None:
            return None
        body = self._path(tenant_id, file_id, ".data")
        return body.read_bytes() if body is not None and body.is_file() else None

    def read_range(self, tenant_id: str, file_id: str, offset: int, length: int) -> bytes | None:
        body = self._path(tenant_id, file_id, ".data")
        if self.get(tenant_id, file_id) is None or body is None:
            return None
        with body.open("rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    def _part_path(self, tenant_id: str, batch_id: str, name: str) -> Path:
        plain = name.replace(".", "").replace("-", "").replace("_", "")
        if not (is_batch_id(batch_id) or is_upload_id(batch_id)) or not plain.isalnum():
            raise ValueError(f"bad part name {batch_id!r}/{name!r}")
        return self.root / _tenant_folder(tenant_id) / "parts" / batch_id / name

    def put_part(self, tenant_id: str, batch_id: str, name: str, data: bytes) -> None:
        try:
            _write_atomically(self._part_path(tenant_id, batch_id, name), data)
        except OSError as error:
            raise errors.BackendUnavailable("The file store cannot be written.") from error

    def part(self, tenant_id: str, batch_id: str, name: str) -> bytes | None:
        path = self._part_path(tenant_id, batch_id, name)
        return path.read_bytes() if path.is_file() else None


_COUNTS = frozenset({"chunks", "chunks_done", "total", "completed", "failed"})
_COLUMNS = ", ".join(f"{c} {'INTEGER' if c in _COUNTS else 'TEXT'}" for c in BatchJob.columns())
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS batch_jobs ({_COLUMNS}, PRIMARY KEY (tenant_id, batch_id));
CREATE TABLE IF NOT EXISTS batch_chunks (
    tenant_id TEXT NOT NULL, batch_id TEXT NOT NULL, chunk INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, batch_id, chunk)
);
"""


def _add_new_columns(conn: sqlite3.Connection) -> None:
    """Add the job fields an older database lacks (``expired_at``), as NULL columns: a server
    upgraded in place keeps its batches."""
    found = {row[1] for row in conn.execute("PRAGMA table_info(batch_jobs)")}
    if not found:
        return  # a new database: the schema creates the table whole
    for column in BatchJob.columns():
        if column not in found:
            kind = "INTEGER" if column in _COUNTS else "TEXT"
            conn.execute(f"ALTER TABLE batch_jobs ADD COLUMN {column} {kind}")


class SqliteJobStore(JobStore):
    """Batch jobs in the local SQLite file (beside keys and the ledger).

    Parameters
    ----------
    path
        The database file.
    """

    def __init__(self, path: Path) -> None:
        self.db = SqliteDatabase(path, SCHEMA, migrate=_add_new_columns)

    def create(self, job: BatchJob) -> None:
        with self.db.transaction() as conn:
            insert(conn, "batch_jobs", job)

    def get(self, tenant_id: str, batch_id: str) -> BatchJob | None:
        found = self.db.select(
            BatchJob,
            "SELECT * FROM batch_jobs WHERE tenant_id = ? AND batch_id = ?",
            (tenant_id, batch_id),
        )
        return found[0] if found else None

    def list(self, tenant_id: str, limit: int, after: str | None = None) -> list[BatchJob]:
        # Batch ids start with their creation time in hex: ordering by id is by age.
        return self.db.select(
            BatchJob,
            "SELECT * FROM batch_jobs WHERE tenant_id = ? AND batch_id < ? "
            "ORDER BY batch_id DESC LIMIT ?",
            (tenant_id, after or "batch_~", limit),
        )

    def transition(
        self, tenant_id: str, batch_id: str, allowed: frozenset[str], **changes: Any
    ) -> BatchJob | None:
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM batch_jobs WHERE tenant_id = ? AND batch_id = ?",
                (tenant_id, batch_id),
            ).fetchone()
            if row is None:
                return None
            job = BatchJob.from_row(row)
            if job.status not in allowed:
                return None
            job = job.with_changes(**changes)
            update(conn, "batch_jobs", job, ("tenant_id", "batch_id"))
            return job

    def chunk_counted(self, tenant_id: str, batch_id: str, index: int) -> bool:
        return bool(
            self.db.rows(
                "SELECT 1 FROM batch_chunks WHERE tenant_id = ? AND batch_id = ? AND chunk = ?",
                (tenant_id, batch_id, index),
            )
        )

    def finish_chunk(
        self, tenant_id: str, batch_id: str, index: int, completed: int, failed: int
    ) -> BatchJob | None:
        with self.db.transaction() as conn:
            new = conn.execute(
                "INSERT OR IGNORE INTO batch_chunks (tenant_id, batch_id, chunk) VALUES (?, ?, ?)",
                (tenant_id, batch_id, index),
            ).rowcount
            if not new:
                return None
            conn.execute(
                "UPDATE batch_jobs SET completed = completed + ?, failed = failed + ?, "
                "chunks_done = chunks_done + 1 WHERE tenant_id = ? AND batch_id = ?",
                (completed, failed, tenant_id, batch_id),
            )
            row = conn.execute(
                "SELECT * FROM batch_jobs WHERE tenant_id = ? AND batch_id = ?",
                (tenant_id, batch_id),
            ).fetchone()
        return BatchJob.from_row(row)

    def close(self) -> None:
        self.db.close()


class ThreadWorkQueue(WorkQueue):
    """An in-process queue drained by worker threads (local mode, tests), fair between tenants.

    Delivery is at least once in the sense that matters here: a handler that raises gets its
    message again, up to ``max_attempts`` times (then it is logged and dropped, like SQS moving
    it to a dead-letter queue).

    Fairness: chunks wait in one line per tenant, and the threads take the next chunk from the
    tenants in turn (round robin), never running more than ``per_tenant`` chunks of one tenant
    at once. So a tenant's 10,000-chunk batch delays another tenant's batch by at most one chunk
    per thread, not by the whole backlog; synchronous calls are never queued here at all (the
    threads are few, and a line refused for a busy model slot waits, see
    :data:`aimaas.batch.worker.OVERLOAD_ATTEMPTS`).

    Parameters
    ----------
    workers
        Threads that run the handler (one keeps the batch from competing with synchronous
        traffic for more than one model slot at a time).
    max_attempts
        Deliveries of one message before it is given up.
    per_tenant
        Most chunks of one tenant in flight at once (default: ``workers``, no cap beyond the
        turn; below ``workers``, a thread is always free for another tenant's first chunk, at
        the price of a lone tenant's batch not using every thread).
    """

    def __init__(self, workers: int = 1, max_attempts: int = 3, per_tenant: int | None = None):
        self.workers = workers
        self.max_attempts = max_attempts
        self.per_tenant = per_tenant or workers
        self._lock = threading.Condition()
        # tenant -> its waiting (chunk, attempt); the dict's order is the round robin's.
        self._waiting: OrderedDict[str, deque[tuple[Chunk, int]]] = OrderedDict()
        self._running: dict[str, int] = {}
        self._unfinished = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.dead: list[Chunk] = []

    def send(self, chunks: list[Chunk]) -> None:
        with self._lock:
            for chunk in chunks:
                self._put(chunk, 1)
            self._lock.notify_all()

    def _put(self, chunk: Chunk, attempt: int) -> None:
        self._waiting.setdefault(chunk.tenant_id, deque()).append((chunk, attempt))
        self._unfinished += 1

    def pending(self) -> list[Chunk]:
        """The chunks not yet taken by a thread (tests run them by hand with no threads)."""
        with self._lock:
            return [chunk for line in self._waiting.values() for chunk, _ in line]

    def _take(self) -> tuple[Chunk, int] | None:
        """The next chunk of the first tenant in turn that is under its in-flight limit (that
        tenant then goes to the back of the turn); None when none may run now."""
        for tenant, line in self._waiting.items():
            if self._running.get(tenant, 0) < self.per_tenant:
                item = line.popleft()
                if line:
                    self._waiting.move_to_end(tenant)
                else:
                    del self._waiting[tenant]
                self._running[tenant] = self._running.get(tenant, 0) + 1
                return item
        return None

    def start(self, handler: Handler) -> None:
        if self._threads:
            return
        for n in range(self.workers):
            thread = threading.Thread(
                target=self._drain, args=(handler,), name=f"batch-worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _drain(self, handler: Handler) -> None:
        while True:
            with self._lock:
                item = None
                while not self._stopping and (item := self._take()) is None:
                    self._lock.wait()
                if item is None:
                    return
            chunk, attempt = item
            retry = False
            try:
                handler(chunk)
            except Exception:
                logger.exception("batch chunk failed", extra={"attempt": attempt})
                retry = attempt < self.max_attempts
                if not retry:
                    self.dead.append(chunk)
            with self._lock:
                self._running[chunk.tenant_id] -= 1
                if retry:
                    self._put(chunk, attempt + 1)
                self._unfinished -= 1
                self._lock.notify_all()

    def join(self) -> None:
        """Wait until every message sent so far is handled (tests, benchmarks)."""
        with self._lock:
            while self._unfinished:
                self._lock.wait()

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
