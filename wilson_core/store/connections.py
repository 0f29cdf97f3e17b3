"""Where the database is, how a connection to it is opened, and a write transaction."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from wilson_core.errors import StoreError

#: default busy timeout; ``$WILSON_BUSY_TIMEOUT_MS`` overrides it (read when a connection opens).
BUSY_TIMEOUT_MS = 5_000


def busy_timeout_ms() -> int:
    """How long a write waits for a lock held by another connection before giving up."""
    value = os.environ.get("WILSON_BUSY_TIMEOUT_MS", "")
    try:
        return max(0, int(value)) if value.strip() else BUSY_TIMEOUT_MS
    except ValueError:
        raise StoreError(f"WILSON_BUSY_TIMEOUT_MS must be a number of milliseconds, got {value!r}") from None


def _describe_error(path: Path, exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "encrypted" in text
    ):
        return (
            f"{path} is not a usable Wilson database ({text}); "
            "it was left untouched: move it aside to start a new one"
        )
    return f"cannot use the Wilson database {path}: {text}"


def default_db_path() -> Path:
    """``$WILSON_DB``, else ``~/.wilson/data.db``."""
    env = os.environ.get("WILSON_DB")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".wilson" / "data.db"


def open_connection(path: Path, *, manual_checkpoints: bool = False) -> sqlite3.Connection:
    """A connection to ``path`` in autocommit mode: WAL, ``synchronous=NORMAL``, busy timeout.

    :param manual_checkpoints: turn off automatic WAL checkpoints (a background
        thread runs them instead).
    """
    timeout_ms = busy_timeout_ms()
    try:
        conn = sqlite3.connect(
            path, timeout=timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreError(_describe_error(path, exc)) from None
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if manual_checkpoints:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("PRAGMA foreign_keys = OFF")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(_describe_error(path, exc)) from None
    return conn


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` / ``ROLLBACK`` on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def transaction(conn: sqlite3.Connection) -> _transaction:
    """A write transaction on ``conn`` (use as a context manager)."""
    return _transaction(conn)
