"""SQLite for local mode and tests: one file, WAL mode, a small pool of connections.

Why a pool and not one connection per thread: the local server runs blocking work in AnyIO's
worker threads, which come and go (an idle one exits after 10 s). Thread-local connections
outlived their threads and were never closed, so every burst of requests after a quiet spell
left its threads' file descriptors behind (327 -> 597 over four bursts). Borrowing from a pool
keeps at most ``max_idle`` idle connections and closes the rest when they are returned.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from aimaas.storage.records import Stored

R = TypeVar("R", bound=Stored)


class SqliteDatabase:
    """Pooled SQLite connections to one file, in WAL mode, with a busy timeout.

    Parameters
    ----------
    path
        The database file; its folder is created if missing. ``:memory:`` is refused because
        each connection would get its own empty database.
    schema
        SQL run once (``CREATE TABLE IF NOT EXISTS ...``) when the object is made.
    migrate
        Called with a connection before ``schema`` runs (to move an older layout aside).
    max_idle
        Most idle connections kept open for reuse; more are closed when returned.
    """

    def __init__(
        self,
        path: Path | str,
        schema: str = "",
        *,
        migrate: Callable[[sqlite3.Connection], None] | None = None,
        max_idle: int = 4,
    ) -> None:
        if str(path) == ":memory:":
            raise ValueError("use a file path: every connection opens the file on its own")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_idle = max_idle
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._open = 0
        self._closed = False
        if schema or migrate:
            with self.connection() as conn:
                if migrate:
                    migrate(conn)
                if schema:
                    conn.executescript(schema)

    @property
    def open_connections(self) -> int:
        """Connections open right now (borrowed or idle)."""
        return self._open

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection (autocommit mode: transactions are explicit)."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.path} is closed")
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                self._open += 1
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                with self._lock:
                    self._open -= 1
                raise
        try:
            yield conn
        finally:
            if conn.in_transaction:  # a caller broke off mid-transaction: never hand it on
                conn.execute("ROLLBACK")
            with self._lock:
                keep = not self._closed and len(self._idle) < self.max_idle
                if keep:
                    self._idle.append(conn)
                else:
                    self._open -= 1
            if not keep:
                conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        with self.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Every row of one read."""
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def select(self, record: type[R], sql: str, params: Sequence[Any] = ()) -> list[R]:
        """The rows of one read as ``record`` instances (see :class:`~aimaas.storage.Stored`)."""
        return [record.from_row(row) for row in self.rows(sql, params)]

    def close(self) -> None:
        """Close the idle connections now, and borrowed ones as they are returned."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn in idle:
            conn.close()


def insert(conn: sqlite3.Connection, table: str, record: Stored, *, or_ignore: bool = False) -> int:
    """Insert ``record`` into ``table`` (columns named as the record's); the rows changed.

    With ``or_ignore`` a row whose key exists is left alone (0 rows changed).
    """
    row = record.to_row()
    verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
    sql = f"{verb} INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
    return conn.execute(sql, tuple(row.values())).rowcount


def update(conn: sqlite3.Connection, table: str, record: Stored, key: Sequence[str]) -> int:
    """Overwrite the row of ``record`` in ``table``, found by its ``key`` columns; rows changed."""
    row = record.to_row()
    assignments = ", ".join(f"{name} = ?" for name in row if name not in key)
    where = " AND ".join(f"{name} = ?" for name in key)
    values = [v for name, v in row.items() if name not in key] + [row[name] for name in key]
    return conn.execute(f"UPDATE {table} SET {assignments} WHERE {where}", values).rowcount  # noqa: S608
