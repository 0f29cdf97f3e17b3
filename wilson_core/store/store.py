"""The SQLite store: durable, concurrent writes on the capture path and the read API.

A capture is one ``INSERT`` (a trigger creates the run row) on the process's
write connection (WAL, ``synchronous=NORMAL``, busy timeout); threads take
turns and whoever holds the turn commits every queued capture at once, so
several threads and processes can capture at the same time.  Large repeated
parts (system prompts, tool schemas) are stored once in ``blobs``, addressed
by their SHA-256.  Reads use a connection per thread.

The parts live in sibling modules: :mod:`.connections` (opening, transactions),
:mod:`.migrating`, :mod:`.writing` (the capture path), :mod:`.reading`,
:mod:`.encoding` and :mod:`.rows` (records to rows and back) and
:mod:`.checkpoints`; :class:`Store` is composed here from the write and read
paths.  Every SQL statement about Wilson's tables lives in this package:
:mod:`.labels` (labels, pairs, the label that counts), :mod:`.selection` (what an
export reads), :mod:`.counting` (counting an export's lines), :mod:`.browse`
(the dashboard's list), :mod:`.summary` (the CLI's views), :mod:`.copying`.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wilson_core.errors import StoreError

from .checkpoints import _Checkpointer
from .connections import (
    _describe_error,
    busy_timeout_ms,
    check_database,
    is_database_url,
    open_connection,
    transaction,
)
from .connections import default_db_path as default_db_path
from .migrating import _up_to_date, migrate
from .reading import ReadPath
from .writing import Batch as Batch
from .writing import WritePath, _Pending


class Store(WritePath, ReadPath):
    """A Wilson database on disk.

    Open with :func:`wilson_core.open_store`.  Safe to share between threads:
    each thread reads on its own connection (:meth:`connection`), and the
    capture writes go through one per-process connection in turns
    (:meth:`writing`, with group commit).  A forked child opens new ones.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        background_checkpoint: bool = False,
        accept_empty: bool = False,
    ) -> None:
        """Open (creating and migrating when needed) the database at ``path``.

        :param background_checkpoint: move WAL checkpoints off the writing
            threads onto a background thread (the capture sink uses this, so
            an app's call never pays for a checkpoint).
        :param accept_empty: with ``create``, an empty file becomes the database (the
            capture sink: the app named that file); commands refuse one.
        """
        if is_database_url(path):
            check_database(path, create=create)  # raises: a server URL, not a file name
        self.path = Path(path).expanduser()
        # refuse what is not Wilson's before anything can write to it
        state = check_database(self.path, create=create, accept_empty=accept_empty)
        #: a Wilson database this process cannot write: opened read-only, never migrated.
        self.read_only = state == "read-only"
        self._local = threading.local()
        # Threads of one process take turns here rather than in SQLite's busy
        # handler, which sleeps at least a millisecond before retrying.
        self._write_lock = threading.Lock()
        self._checkpointer = _Checkpointer(self) if background_checkpoint else None
        self._busy_s = busy_timeout_ms() / 1000
        self._write_conn: sqlite3.Connection | None = None
        self._write_pid = 0
        self._pending: collections.deque[_Pending] = collections.deque()
        self._known_blobs: set[str] = set()
        self._system_hashes: dict[str, str] = {}
        if state == "new":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder for {self.path}: {exc}") from None
        conn = self.connection()
        try:
            if not self.read_only:
                self._migrate(conn)
            elif not _up_to_date(conn):
                raise StoreError(
                    f"{self.path} cannot be written and was made by an older Wilson: "
                    "open it once where it can be written to bring it up to date"
                )
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(_describe_error(self.path, exc)) from None
        self._path_text = os.fspath(self.path)
        self._identity = self._file_identity()

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self._path_text)
        except OSError:
            return None
        return (info.st_dev, info.st_ino)

    def replaced(self) -> bool:
        """Whether the file at :attr:`path` was deleted or replaced since this store opened it.

        One ``stat``: the capture sink asks after every write, so that a write
        that went into an unlinked file is written again where it is read.
        """
        return self._file_identity() != self._identity

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrate(conn, self.path)

    # -- connections -----------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (created on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = self._open()
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    def write_connection(self) -> sqlite3.Connection:
        """The connection the capture path writes with: one per process, shared by its threads.

        One connection keeps its page cache warm; a connection per thread would
        find its cache invalidated by every other thread's commit.  Use it only
        inside :meth:`writing`.
        """
        conn = self._write_conn
        if conn is None or self._write_pid != os.getpid():
            conn = self._open()
            self._write_conn, self._write_pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        return open_connection(
            self.path, manual_checkpoints=self._checkpointer is not None, read_only=self.read_only
        )

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """This process's turn to write, on :meth:`write_connection`.

        Waits no longer than the busy timeout for the other threads, then
        raises ``sqlite3.OperationalError`` like a lock held by another process.
        """
        if not self._write_lock.acquire(timeout=self._busy_s):
            raise sqlite3.OperationalError(
                f"database is locked (another thread of this process held it for {self._busy_s:g} s)"
            )
        try:
            yield self.write_connection()
        finally:
            self._write_lock.release()

    def label_transaction(self) -> Any:
        """A write transaction for labels on this thread's connection (use as a context manager).

        ``BEGIN IMMEDIATE``: reads inside it see a database no other writer changes.
        """
        return transaction(self.connection())

    def close(self) -> None:
        """Close this thread's connection and stop the background checkpointer."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._write_conn is not None and self._write_lock.acquire(timeout=self._busy_s):
            try:
                if self._write_pid == os.getpid():
                    self._write_conn.close()
                self._write_conn = None
            finally:
                self._write_lock.release()

    def db(self) -> Any:
        """A :class:`sqlite_utils.Database` over this thread's connection (for reads and tools)."""
        from sqlite_utils import Database

        return Database(self.connection())
