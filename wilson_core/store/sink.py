"""The built-in capture sink: every interaction and tool result into the SQLite store.

When the database cannot be written (locked past the busy timeout, read-only,
disk full, folder missing), the record goes to the spool instead and is
replayed on the next successful write or open, so nothing is lost and the
app's call is never affected.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

from wilson_core.errors import StoreError
from wilson_core.hookspecs import hookimpl
from wilson_core.records import Interaction, Run, ToolResult

from . import background, spool
from .connections import check_database, is_database_url
from .store import Store, default_db_path

_stores: dict[tuple[int, Path], Store] = {}
#: the same stores by the ``db_path`` the facade passes, so the hot path skips ``Path`` work.
_by_key: dict[tuple[int, str | None, str | None], Store] = {}
_lock = threading.Lock()
_spooled_here: set[Path] = set()
#: after a failed write, captures for that database go straight to the spool until this time.
_down_until: dict[Path, float] = {}

#: this plugin's entry-point name (group ``wilson``).
PLUGIN_NAME = "sqlite_sink"

_WRITE_ERRORS = (sqlite3.Error, OSError, StoreError)
_log = logging.getLogger("wilson.capture")
#: what a database raises for a record it will never take (as opposed to "not now": locked, full).
_REFUSED = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.DataError, sqlite3.ProgrammingError,
            OverflowError, ValueError, TypeError)


def _refused() -> tuple[type[BaseException], ...]:
    """:data:`_REFUSED`, plus psycopg's refusals once a PostgreSQL store has loaded it.

    A record PostgreSQL will never take (a data or integrity error) is quarantined
    like one SQLite refuses, instead of blocking its spool file for ever.
    """
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return _REFUSED
    return (*_REFUSED, psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)


def _retry_after_s() -> float:
    try:
        return float(os.environ.get("WILSON_CAPTURE_RETRY_S", "1.0"))
    except ValueError:
        return 1.0


def _resolve(db_path: str | os.PathLike[str] | None) -> Path:
    location = os.fspath(db_path) if db_path else os.environ.get("WILSON_DB", "")
    if location.startswith(("postgresql://", "postgres://")):  # a server: keyed by its URL
        from .postgres import redact

        return redact(location)  # type: ignore[return-value]
    if db_path and is_database_url(db_path):
        check_database(db_path, create=True)  # raises: a server URL is not a file name
    return Path(db_path).expanduser() if db_path else default_db_path()


def store_for(db_path: str | os.PathLike[str] | None) -> Store:
    """The process's cached store for ``db_path`` (opened, migrated and replayed once)."""
    raw = None if db_path is None else os.fspath(db_path)
    fast_key = (os.getpid(), raw, os.environ.get("WILSON_DB") if raw is None else None)
    store = _by_key.get(fast_key)
    if store is not None:
        return store
    path = _resolve(db_path)
    key = (os.getpid(), path)
    with _lock:
        store = _stores.get(key)
        if store is None:
            if isinstance(path, str):  # PostgreSQL (the URL with its password, to connect)
                from .postgres import PostgresStore

                store = PostgresStore(os.fspath(db_path or os.environ["WILSON_DB"]))
            else:
                store = Store(path, background_checkpoint=True, accept_empty=True)
                if store.read_only:  # not cached: tried again once it can be written
                    store.close()
                    raise StoreError(f"{path} cannot be written (read-only)")
            try:
                replay_spool(store)
            except Exception as exc:  # never blocks capture: retried on the next open or write
                _log.warning("spooled captures for %s could not be replayed yet (%s)", path, exc)
            _stores[key] = store
        _by_key[fast_key] = store
    return store


def _forget(store: Store) -> None:
    """Drop ``store`` from the cache (its file was deleted or replaced) and close what can be closed."""
    with _lock:
        for key in [k for k, v in _stores.items() if v is store]:
            del _stores[key]
        for key in [k for k, v in _by_key.items() if v is store]:
            del _by_key[key]
    try:
        store.close()
    except Exception:
        pass


def forget_stores() -> None:
    """Close and drop cached stores (tests, and after a database file is replaced); captures
    queued in the background are written first."""
    background_writer.flush()
    with _lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
        _by_key.clear()
        _down_until.clear()
        _spooled_here.clear()


def _at_exit() -> None:
    background_writer.flush()
    memory_queue.at_exit()
    forget_stores()


# Close cleanly at exit: the last connection to close checkpoints the WAL into the
# database (this sink's writers leave checkpoints to a background thread); the
# background writer's queue is written first, then the in-memory queue gets its last try.
atexit.register(_at_exit)


def replay_spool(store: Store) -> int:
    """Write spooled captures for ``store`` into it; return how many were replayed.

    Each spool file is replayed in one transaction together with the
    ``spooled`` / ``replayed`` counters, so a replay cut short is simply done
    again (inserts are idempotent) without counting twice.  When the file's
    transaction fails, its records are written one by one, and a record the
    database refuses even then goes to the quarantine file (counted as
    ``quarantined``): a bad record never blocks the others.  Lines that cannot
    be read (a torn last line after a crash) are counted and the file is kept
    as ``*.unreadable-<time>`` for a person to look at.
    """
    from .writing import Batch

    replayed = 0
    for claimed in spool.claim(store.path):
        path = claimed.path
        try:
            interactions, results, runs, bad = [], [], [], []
            for _number, record, error in spool.read(path):
                if record is None:
                    bad.append(error)
                elif isinstance(record, Interaction):
                    interactions.append(record)
                elif isinstance(record, Run):
                    runs.append(record)
                else:
                    results.append(record)
            good = len(interactions) + len(results) + len(runs)
            counters = {"spooled": good + len(bad), "replayed": good, "spool_unreadable": len(bad)}
            try:
                store.write_batch(
                    Batch(runs=runs, interactions=interactions, tool_results=results, counters=counters)
                )
            except _refused():  # a record the database refuses: find it, keep the others
                good = _replay_one_by_one(store, path, [*runs, *interactions, *results], counters)
            replayed += good
            if bad:
                stamp = time.strftime("%Y%m%dT%H%M%S")
                kept = path.with_name(f"{path.name.split('.replaying-')[0]}.unreadable-{stamp}-{os.getpid()}")
                os.replace(path, kept)
                _log.warning("%d spooled line(s) could not be read; kept in %s", len(bad), kept)
            else:
                path.unlink(missing_ok=True)
        finally:
            claimed.release()
    _spooled_here.discard(store.path)
    return replayed


def _replay_one_by_one(store: Store, path: Path, records: list, counters: dict[str, int]) -> int:
    """Each record on its own; those the database refuses go to quarantine.  Returns how many were written."""
    from .writing import Batch

    written = quarantined = 0
    for record in records:
        batch = Batch(
            runs=[record] if isinstance(record, Run) else [],
            interactions=[record] if isinstance(record, Interaction) else [],
            tool_results=[record] if isinstance(record, ToolResult) else [],
        )
        try:
            store.write_batch(batch)
            written += 1
        except _refused() as exc:
            kept = spool.quarantine(path, record, f"{type(exc).__name__}: {exc}")
            quarantined += 1
            _log.warning("a spooled capture the database refuses (%s) was kept in %s", exc, kept)
    store.write_batch(Batch(counters={**counters, "replayed": written, "quarantined": quarantined}))
    return written


# -- the last resort: a bounded queue in memory, retried in the background -----


def _memory_limit() -> int:
    try:
        return max(0, int(os.environ.get("WILSON_MEMORY_QUEUE", "10000")))
    except ValueError:
        return 10_000


class MemoryQueue:
    """Captures neither the database nor any spool location could take.

    Retried every :func:`_retry_after_s` seconds by a daemon thread (database
    first, then the spool) and once more at exit.  When full, the oldest
    record is dropped; every drop is counted (``dropped``, written into the
    database's ``capture_counters`` as soon as it can be) and warned about.
    """

    def __init__(self) -> None:
        self.items: collections.deque[tuple[str | None, Interaction | ToolResult | Run]] = collections.deque()
        self.dropped: dict[str | None, int] = {}
        self.dropped_total = 0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time (the retry thread, at exit, a caller)
        self._in_flight = 0  # taken by a flush and not yet written nor handed back
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def __len__(self) -> int:
        """Records not yet in the database or a spool, counting those a flush is writing now."""
        with self._lock:
            return len(self.items) + self._in_flight

    def put(self, db_path: str | None, record: Interaction | ToolResult | Run) -> None:
        with self._lock:
            self.items.append((db_path, record))
            while len(self.items) > _memory_limit():
                lost_path, _ = self.items.popleft()
                self._drop(lost_path, 1)
            if self._thread is None or not self._thread.is_alive() or self._thread.ident is None:
                self._thread = threading.Thread(target=self._run, name="wilson-capture-retry", daemon=True)
                self._thread.start()

    def _drop(self, db_path: str | None, amount: int) -> None:
        self.dropped[db_path] = self.dropped.get(db_path, 0) + amount
        self.dropped_total += amount
        _log.error(
            "%d capture(s) for %s dropped: neither the database nor any spool location could take "
            "them and the in-memory queue is full", amount, _resolve(db_path),
        )

    def _run(self) -> None:
        while self.items or self.dropped:
            self._wake.wait(_retry_after_s())
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Try every queued record once (database, then spool); return how many are still queued.

        A record stays counted in ``len()`` until it is written or spooled, so "nothing queued"
        never reads true while a flush is still writing."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            items = list(self.items)
            self.items.clear()
            self._in_flight = len(items)
        left = []
        for db_path, record in items:
            if left:  # the first failure says the way is still blocked: keep the order
                left.append((db_path, record))
                continue
            try:
                store = store_for(db_path)
                _write_to(store, record)
            except Exception:
                try:
                    spool.append(_resolve(db_path), record)
                    _spooled_here.add(_resolve(db_path))
                except OSError:
                    left.append((db_path, record))
                    continue
            with self._lock:
                self._in_flight -= 1
        with self._lock:
            self.items.extendleft(reversed(left))
            self._in_flight = 0
            for db_path, amount in list(self.dropped.items()):
                try:
                    store_for(db_path).bump_counter("dropped", amount)
                except Exception:
                    continue
                self.dropped.pop(db_path, None)
        return len(self.items)

    def at_exit(self) -> None:
        """The last try; what is still queued is lost, and said so."""
        if not self.items and not self.dropped:
            return
        self.flush()
        if self.items:
            lost: dict[str | None, int] = {}
            for db_path, _ in self.items:
                lost[db_path] = lost.get(db_path, 0) + 1
            self.items.clear()
            for db_path, amount in lost.items():
                self._drop(db_path, amount)
            self.flush()  # the drop counts, if the database takes them now


memory_queue = MemoryQueue()


def capture_state() -> dict[str, int]:
    """This process's capture state: records held in memory, records dropped, records the
    background writer has not written yet."""
    return {"memory_queued": len(memory_queue), "dropped": memory_queue.dropped_total,
            "background_queued": len(background_writer)}


#: (path, kind) -> when that warning was last logged: a long outage says so every few seconds, not per call.
_warned: dict[tuple[object, str], float] = {}


def _warn(path: object, kind: str, message: str, *args: object) -> None:
    now = time.monotonic()
    if now - _warned.get((path, kind), -1e9) >= 10.0:
        _warned[(path, kind)] = now
        _log.warning(message, *args)


def _write_to(store: Store, record: Interaction | ToolResult | Run) -> None:
    if isinstance(record, Interaction):
        store.write_interaction(record)
    elif isinstance(record, ToolResult):
        store.write_tool_result(record)
    else:
        store.write_run(record)
    if store.replaced():
        # the file was deleted or replaced: that write went into a file nobody will read
        _forget(store)
        raise StoreError(f"{store.path} was deleted or replaced while open")


def _write(db_path: str | None, record: Interaction | ToolResult | Run) -> None:
    """Write ``record``; when the database cannot take it, spool it (never lose it)."""
    store = None
    try:
        if _down_until:
            path = _resolve(db_path)
            if time.monotonic() < _down_until.get(path, 0.0):
                raise StoreError(f"{path} failed a moment ago; not retried yet")
        store = store_for(db_path)
        try:
            _write_to(store, record)
        except StoreError:
            if not isinstance(store.path, str) and (store.path.exists() or store.path.parent.is_dir()):
                store = store_for(db_path)  # replaced or deleted: write into what is there now
                _write_to(store, record)
            else:
                raise
    except Exception as exc:  # whatever failed, the record goes to the spool
        path = store.path if store is not None else _resolve(db_path)
        _down_until[path] = time.monotonic() + _retry_after_s()
        try:
            where = spool.append(path, record)
        except OSError as spool_error:
            memory_queue.put(db_path, record)
            _warn(
                path, "memory",
                "capture could not be written to %s (%s) nor spooled (%s); held in memory and retried",
                path, exc, spool_error,
            )
            return
        _spooled_here.add(path)
        _warn(path, "spool", "capture could not be written to %s (%s); spooled to %s for replay", path, exc, where)
        return
    if _spooled_here and store.path in _spooled_here:
        _down_until.pop(store.path, None)
        try:
            replay_spool(store)
        except Exception as exc:  # the replay is retried later; the app's call is not affected
            _log.warning("spooled captures for %s could not be replayed yet (%s)", store.path, exc)


def _write_many(db_path: str | None, records: list[Interaction | ToolResult | Run]) -> None:
    """Write ``records`` in one transaction (the background writer's batch); when that fails,
    each goes the synchronous way (:func:`_write`: retried, else spooled)."""
    store = None
    try:
        if _down_until and time.monotonic() < _down_until.get(_resolve(db_path), 0.0):
            raise StoreError("failed a moment ago; not retried yet")
        store = store_for(db_path)
        store.write_captures(records)
        if store.replaced():  # written into a file nobody will read: write them again below
            _forget(store)
            raise StoreError(f"{store.path} was deleted or replaced while open")
    except Exception:
        for record in records:
            _write(db_path, record)
        return
    if _spooled_here and store.path in _spooled_here:
        try:
            replay_spool(store)
        except Exception as exc:
            _log.warning("spooled captures for %s could not be replayed yet (%s)", store.path, exc)


#: the queue and thread of ``WILSON_CAPTURE_WRITE=background`` (see :mod:`.background`).
background_writer = background.BackgroundWriter(_write_many)


def flush() -> None:
    """Write every capture this process has queued in the background (nothing to do in sync mode)."""
    background_writer.flush()


def _capture(db_path: str | None, record: Interaction | ToolResult | Run) -> None:
    if background.mode() != "background" or (
        _down_until and time.monotonic() < _down_until.get(_resolve(db_path), 0.0)
    ):  # synchronous, or the database failed a moment ago: straight to the spool, no new attempt
        _write(db_path, record)
        return
    try:
        store_for(db_path)  # opened here, not by the writer: an exit handler cannot open one
    except Exception:
        _write(db_path, record)  # cannot be opened now: spooled as in the synchronous mode
        return
    background_writer.put(db_path, record)


@hookimpl
def wilson_capture_interaction(interaction: Interaction, db_path: str | None) -> None:
    _capture(db_path, interaction)


@hookimpl
def wilson_capture_tool_result(tool_result: ToolResult, db_path: str | None) -> None:
    _capture(db_path, tool_result)


@hookimpl
def wilson_capture_failed(record: object, sink: str, db_path: str | None) -> None:
    """Count another sink's failure in the database (``wilson stats`` shows it)."""
    if sink == PLUGIN_NAME:
        return  # this sink's own failures are spooled, and counted when replayed
    _counter(db_path, "sink_failures")


def _counter(db_path: str | None, name: str) -> None:
    try:
        store_for(db_path).bump_counter(name)
    except Exception:  # a failure report must not fail the app
        pass


@hookimpl
def wilson_run_started(run: Run, db_path: str | None) -> None:
    _capture(db_path, run)


@hookimpl
def wilson_run_finished(run: Run, error: BaseException | None, db_path: str | None) -> None:
    _capture(db_path, run)


