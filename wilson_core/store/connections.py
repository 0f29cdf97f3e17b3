"""Where the database is, how a connection to it is opened, and a write transaction."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import urllib.parse
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
        if is_database_url(env):
            raise StoreError(
                f"WILSON_DB={env!r} is a database URL; only SQLite database files are supported here "
                "(give a file path)"
            )
        return Path(env).expanduser()
    return Path.home() / ".wilson" / "data.db"


_SQLITE_HEADER = b"SQLite format 3\x00"
#: schemes of database URLs, which are never taken for file names.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


#: the same after ``Path()`` folded its ``//`` (``postgresql:/user@/db``).
_FOLDED_URL = re.compile(r"^(postgres(ql)?|mysql|mariadb|sqlite|https?|file)(\+\w+)?:/", re.IGNORECASE)


def is_database_url(path: str | os.PathLike[str]) -> bool:
    """``postgresql://...`` and the like: a server, not a file."""
    text = os.fspath(path)
    return bool(_URL.match(text) or _FOLDED_URL.match(text))


def check_database(path: Path, *, create: bool, accept_empty: bool = False) -> str:
    """What is at ``path``, before anything writes to it; refuse what is not Wilson's.

    Returns ``"new"`` (nothing there and ``create`` is on, or an empty file and
    ``accept_empty`` is on: the app named that file for its captures),
    ``"wilson"`` (a Wilson database) or ``"read-only"`` (a Wilson database
    this process cannot write).  Reads the file without changing a byte.

    :raises StoreError: a URL, a folder, a missing or empty file with ``create``
        off, a file that is not SQLite, or an SQLite database that is not Wilson's.
    """
    if is_database_url(path):
        raise StoreError(
            f"{os.fspath(path)!r} is a database URL; only SQLite database files are supported here "
            "(give a file path)"
        )
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if not create:
            raise StoreError(f"no Wilson database at {path} (capture or import creates one)") from None
        return "new"
    except OSError as exc:
        raise StoreError(f"cannot use {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{path} is a folder, not a Wilson database")
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path} is not a regular file; a Wilson database is an SQLite file")
    if info.st_size == 0:
        if not (create and accept_empty):
            raise StoreError(
                f"{path} is an empty file, not a Wilson database; it was left untouched "
                "(remove it to let Wilson create a database there)"
            )
        return "new"
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    if header != _SQLITE_HEADER:
        raise StoreError(f"{path} is not a usable Wilson database (not an SQLite file); it was left untouched")
    tables, wilson = inspect_sqlite(path)
    if not wilson and tables - {"_sqlite_migrations"}:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"{path} is not a usable Wilson database: an SQLite database of another application (tables: {shown}); it was left "
            "untouched (to bring its data in, use `wilson import`)"
        )
    if not wilson and not tables and not (create and accept_empty):
        raise StoreError(f"{path} is an empty SQLite database, not a Wilson database; it was left untouched")
    writable = os.access(path, os.W_OK) and os.access(path.parent if str(path.parent) else ".", os.W_OK)
    if not writable:
        return "read-only"
    return "wilson" if wilson or tables else "new"


def inspect_sqlite(path: Path) -> tuple[set[str], bool]:
    """The tables of the SQLite file at ``path`` and whether Wilson's migrations are recorded in it.

    Reads the file as it is (``immutable=1``: no ``-wal`` or ``-shm`` is made
    beside a file that may not be ours) when it has no write-ahead log; when it
    has one, the file is read with its log under SQLite's locks, since a
    checkpoint may be writing the file at that moment (an ``immutable`` read of
    it then sees half-copied pages: "database disk image is malformed").

    :raises StoreError: it is not a readable SQLite database.
    """
    if os.path.exists(f"{path}-wal"):
        # With a log beside it, the main file alone may be mid-checkpoint (another connection
        # copying pages into it): read it with its log, under SQLite's locks.
        return _tables(path, lambda: _connect_read_only(path))
    uri = "file:" + urllib.parse.quote(os.fspath(Path(path).absolute()))
    try:
        return _tables(path, lambda: sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None))
    except StoreError:
        if not os.path.exists(f"{path}-wal"):
            raise
        # a writer opened the log since: the torn read was the checkpoint's, not the file's
        return _tables(path, lambda: _connect_read_only(path))


def _tables(path: Path, connect: Any) -> tuple[set[str], bool]:
    try:
        conn = connect()
    except sqlite3.Error as exc:
        raise StoreError(_describe_error(path, exc)) from None
    try:
        tables = {
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
            if not row[0].startswith("sqlite_")
        }
        wilson = "_sqlite_migrations" in tables and bool(
            conn.execute("SELECT 1 FROM _sqlite_migrations WHERE migration_set = 'wilson' LIMIT 1").fetchone()
        )
    except sqlite3.DatabaseError as exc:
        raise StoreError(_describe_error(path, exc)) from None
    finally:
        conn.close()
    return tables, wilson


def _connect_read_only(path: Path, timeout_s: float | None = None) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``); ``immutable=1`` when even that cannot open (read-only folder)."""
    uri = "file:" + urllib.parse.quote(os.fspath(Path(path).absolute()))
    timeout = busy_timeout_ms() / 1000 if timeout_s is None else timeout_s
    try:
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        # a WAL database in a folder this process cannot write: no -shm can be made
        return sqlite3.connect(uri + "?immutable=1", uri=True, timeout=timeout, isolation_level=None,
                               check_same_thread=False)


def open_connection(
    path: Path, *, manual_checkpoints: bool = False, read_only: bool = False
) -> sqlite3.Connection:
    """A connection to ``path`` in autocommit mode: WAL, ``synchronous=NORMAL``, busy timeout.

    :param manual_checkpoints: turn off automatic WAL checkpoints (a background
        thread runs them instead).
    :param read_only: open without ever writing (a database this process cannot write).
    """
    timeout_ms = busy_timeout_ms()
    if read_only:
        try:
            conn = _connect_read_only(path)
        except sqlite3.Error as exc:
            raise StoreError(_describe_error(path, exc)) from None
        conn.row_factory = sqlite3.Row
        return conn
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
