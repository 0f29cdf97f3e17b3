"""Capture written off the app's thread: ``WILSON_CAPTURE_WRITE=background``.

By default the sink writes each captured record before the app's call returns
(durable the moment the call ends; see docs/capture.md, "Failure handling").
In background mode the call only hands its finished record to a queue, and one
writer thread per process writes what has queued in one transaction, through
the same batch write the spool's replay uses.  The app's thread then pays for
building the record and nothing else; the database's work is shared by every
record of a batch.

The price is a window: records still queued when the process dies without
running its exit handlers (``SIGKILL``, ``os._exit``, a crash in native code,
the default ``SIGTERM``) are lost.  A normal exit writes them (an ``atexit``
handler), and :func:`flush` writes them on demand.  A batch the database does
not take goes record by record through the synchronous path, so it lands in the
spool exactly as a failed synchronous write does.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

#: the environment variable that selects the write mode, and its values.
ENVIRONMENT = "WILSON_CAPTURE_WRITE"
MODES = ("sync", "background")

#: a batch is at most this many records (one transaction each).
BATCH = 1000

#: the environment variable bounding the queue (records); past it the app's thread writes the queue itself.
LIMIT_ENVIRONMENT = "WILSON_CAPTURE_QUEUE"
DEFAULT_LIMIT = 10_000

_log = logging.getLogger("wilson.capture")


def mode() -> str:
    """The write mode asked for in the environment (``sync`` when unset or unknown)."""
    value = os.environ.get(ENVIRONMENT)
    if not value:
        return "sync"
    value = value.strip().lower()
    if value not in MODES:
        _warn_unknown(value)
        return "sync"
    return value


_warned_values: set[str] = set()


def _warn_unknown(value: str) -> None:
    if value not in _warned_values:
        _warned_values.add(value)
        _log.warning("%s=%r is not one of %s; captures are written synchronously", ENVIRONMENT, value,
                     ", ".join(MODES))


def _limit() -> int:
    try:
        return max(1, int(os.environ.get(LIMIT_ENVIRONMENT, DEFAULT_LIMIT)))
    except ValueError:
        return DEFAULT_LIMIT


class BackgroundWriter:
    """A queue of ``(db_path, record)`` and the thread that writes it.

    ``write(db_path, records)`` is the sink's batch write (it never raises: what
    the database refuses goes to the spool).
    """

    def __init__(self, write: Callable[[Any, list[Any]], None]) -> None:
        self._write = write
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # a forked child starts empty: its parent writes what it had queued
        self._items: collections.deque[tuple[Any, Any]] = collections.deque()
        self._wake = threading.Event()
        self._writing = threading.Lock()  # held while a batch is written (the thread, flush, exit)
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        self._taken = 0  # taken from the queue by a writer and not yet written
        #: a fixed queue limit; ``None``: ``$WILSON_CAPTURE_QUEUE``, read at each put like the mode
        self.limit: int | None = None

    def __len__(self) -> int:
        """Records queued or being written."""
        return len(self._items) + self._taken

    def put(self, db_path: Any, record: Any) -> None:
        """Queue ``record`` for ``db_path`` (the app's thread: no I/O here).

        When the writer falls behind by more than the queue's limit (a database
        locked for seconds, a disk slower than the app), the calling thread
        writes the queue itself, in order: memory stays bounded and nothing is
        dropped or reordered."""
        items = self._items
        items.append((db_path, record))
        if self._thread is None:
            self._start_thread()
        self._wake.set()
        if len(items) > (self.limit or _limit()):
            self.flush()

    def _start_thread(self) -> None:
        with self._start:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="wilson-capture-writer", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # never let the writer die: the next wake tries again
                _log.exception("the background capture writer failed; retrying on the next capture")

    def flush(self) -> None:
        """Write everything queued so far, on the calling thread; return when it is written (or spooled)."""
        with self._writing:
            items = self._items
            while items:
                taken = []
                while items and len(taken) < BATCH:
                    taken.append(items.popleft())
                self._taken = len(taken)
                try:
                    by_db: dict[Any, list[Any]] = {}
                    for db_path, record in taken:
                        by_db.setdefault(db_path, []).append(record)
                    for db_path, records in by_db.items():
                        self._write(db_path, records)
                finally:
                    self._taken = 0
