"""WAL checkpoints on a background thread, so that no capture call pays for one."""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import TYPE_CHECKING

from .connections import busy_timeout_ms

if TYPE_CHECKING:
    from .store import Store


class _Checkpointer:
    """WAL checkpoints on a background thread, every :attr:`EVERY` writes.

    Writers set ``wal_autocheckpoint = 0`` so no capture call is ever the one
    that pays for copying the WAL back into the database; a PASSIVE checkpoint
    never blocks writers.
    """

    EVERY = 400

    def __init__(self, store: Store) -> None:
        self.path = store.path
        #: the store's write turn: held for the short second checkpoint (see :meth:`_checkpoint`).
        self._write_lock = store._write_lock
        self._writes = 0
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False

    def note_write(self, count: int = 1) -> None:
        self._writes += count
        if self._writes >= self.EVERY:
            self._writes = 0
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, name="wilson-checkpoint", daemon=True
                )
                self._thread.start()
            self._event.set()

    def _loop(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=busy_timeout_ms() / 1000, isolation_level=None)
        except sqlite3.Error:
            return
        try:
            while not self._stopping:
                self._event.wait()
                self._event.clear()
                try:
                    self._checkpoint(conn)
                except sqlite3.Error:
                    pass
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back into the database, so that the next write starts the WAL over.

        SQLite writes the WAL from its start again only when a write begins
        with every frame copied back.  Under steady capture, frames are added
        while a checkpoint runs, so that moment never came and the WAL grew
        without end (every write extending the file: slower, and as large as
        everything captured since the store opened).  So a first PASSIVE
        checkpoint copies the bulk while the capture threads go on, then a
        second one copies the few frames added meanwhile while holding this
        process's write turn (other processes' writers are not waited for).
        """
        # (its counts describe the WAL as it was when it began: frames may have come since)
        busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
        if busy:
            return  # another connection is checkpointing
        if not self._write_lock.acquire(timeout=1.0):
            return  # the next round tries again
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            self._write_lock.release()

    def stop(self) -> None:
        """Run a last checkpoint and end the thread (a later write starts it again)."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        self._stopping = True
        self._event.set()
        thread.join(timeout=5)
        self._stopping = False
        self._thread = None
