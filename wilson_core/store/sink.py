"""The built-in capture sink: every interaction and tool result into the SQLite store.

When the database cannot be written (locked past the busy timeout, read-only,
disk full, folder missing), the record goes to the spool instead and is
replayed on the next successful write or open, so nothing is lost and the
app's call is never affected.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path

from wilson_core.errors import StoreError
from wilson_core.hookspecs import hookimpl
from wilson_core.records import Interaction, Run, ToolResult

from . import spool
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


def _retry_after_s() -> float:
    try:
        return float(os.environ.get("WILSON_CAPTURE_RETRY_S", "1.0"))
    except ValueError:
        return 1.0


def _resolve(db_path: str | os.PathLike[str] | None) -> Path:
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
            store = Store(path, background_checkpoint=True)
            replay_spool(store)
            _stores[key] = store
        _by_key[fast_key] = store
    return store


def forget_stores() -> None:
    """Close and drop cached stores (tests, and after a database file is replaced)."""
    with _lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
        _by_key.clear()
        _down_until.clear()
        _spooled_here.clear()


# Close cleanly at exit: the last connection to close checkpoints the WAL into the
# database (this sink's writers leave checkpoints to a background thread).
atexit.register(forget_stores)


def replay_spool(store: Store) -> int:
    """Write spooled captures for ``store`` into it; return how many were replayed.

    Each spool file is replayed in one transaction together with the
    ``spooled`` / ``replayed`` counters, so a replay cut short is simply done
    again (inserts are idempotent) without counting twice.  Lines that cannot
    be read (a torn last line after a crash) are counted and the file is kept
    as ``*.unreadable-<time>`` for a person to look at.
    """
    from .store import (
        _INSERT_BLOB,
        _INSERT_INTERACTION,
        _INSERT_RUN,
        _INSERT_TOOL_RESULT,
        _dumps,
        transaction,
    )

    replayed = 0
    for path in spool.claim(store.path):
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
        rows = [store.interaction_row(i) for i in interactions]
        with store.writing() as conn, transaction(conn):
            for run in runs:
                metadata = _dumps(run.metadata) if run.metadata else None
                conn.execute(_INSERT_RUN, (run.id, run.call_type, run.started_at, metadata))
                conn.execute(
                    "UPDATE runs SET ended_at = coalesce(?, ended_at), "
                    "metadata_json = coalesce(metadata_json, ?) WHERE id = ?",
                    (run.ended_at, metadata, run.id),
                )
            for row, blobs in rows:
                for kind, content, digest in blobs:
                    conn.execute(_INSERT_BLOB, (digest, kind, content))
                conn.execute(_INSERT_INTERACTION, row)
            for r in results:
                conn.execute(
                    _INSERT_TOOL_RESULT,
                    (r.id, r.interaction_id, r.tool_call_id, r.name, _dumps(r.arguments),
                     r.content, int(r.is_error), r.duration_ms, r.created_at),
                )
            for name, amount in (
                ("spooled", len(interactions) + len(results) + len(runs) + len(bad)),
                ("replayed", len(interactions) + len(results) + len(runs)),
                ("spool_unreadable", len(bad)),
            ):
                if amount:
                    conn.execute(
                        "INSERT INTO capture_counters (name, value) VALUES (?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                        (name, amount),
                    )
        replayed += len(interactions) + len(results) + len(runs)
        if bad:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            kept = path.with_name(f"{path.name.split('.replaying-')[0]}.unreadable-{stamp}-{os.getpid()}")
            os.replace(path, kept)
            warnings.warn(f"{len(bad)} spooled line(s) could not be read; kept in {kept}", stacklevel=2)
        else:
            path.unlink(missing_ok=True)
    _spooled_here.discard(store.path)
    return replayed


def _write(db_path: str | None, record: Interaction | ToolResult | Run) -> None:
    """Write ``record``; when the database cannot take it, spool it (never lose it)."""
    store = None
    try:
        if _down_until:
            path = _resolve(db_path)
            if time.monotonic() < _down_until.get(path, 0.0):
                raise StoreError(f"{path} failed a moment ago; not retried yet")
        store = store_for(db_path)
        if isinstance(record, Interaction):
            store.write_interaction(record)
        elif isinstance(record, ToolResult):
            store.write_tool_result(record)
        else:
            store.write_run(record)
    except Exception as exc:  # whatever failed, the record goes to the spool
        path = store.path if store is not None else _resolve(db_path)
        spool.append(path, record)  # raises when even the spool cannot be written
        _spooled_here.add(path)
        _down_until[path] = time.monotonic() + _retry_after_s()
        warnings.warn(
            f"capture could not be written to {path} ({exc}); spooled for replay",
            stacklevel=3,
        )
        return
    if _spooled_here and store.path in _spooled_here:
        _down_until.pop(store.path, None)
        try:
            replay_spool(store)
        except _WRITE_ERRORS:
            pass


@hookimpl
def wilson_capture_interaction(interaction: Interaction, db_path: str | None) -> None:
    _write(db_path, interaction)


@hookimpl
def wilson_capture_tool_result(tool_result: ToolResult, db_path: str | None) -> None:
    _write(db_path, tool_result)


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
    _write(db_path, run)


@hookimpl
def wilson_run_finished(run: Run, error: BaseException | None, db_path: str | None) -> None:
    _write(db_path, run)


