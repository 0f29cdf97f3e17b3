"""Bringing a database up to the current schema, and knowing cheaply when it already is."""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from pathlib import Path

from wilson_core import filelock


@functools.lru_cache(maxsize=1)
def migration_names() -> tuple[str, ...]:
    """The names of the schema's migrations, read from ``schema.py`` without running it.

    Importing ``sqlite_utils`` also imports pandas and numpy when they are
    installed (a third of a second), so an up-to-date database is recognised
    without it.
    """
    import ast

    try:
        source = Path(__file__).with_name("schema.py").read_text(encoding="utf-8")
    except OSError:
        return ()
    names = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Name)
                and decorator.func.id == "migrations"
            ):
                custom = [
                    k.value.value
                    for k in decorator.keywords
                    if k.arg == "name" and isinstance(k.value, ast.Constant)
                ]
                names.append(custom[0] if custom else node.name)
    return tuple(names)


def _up_to_date(conn: sqlite3.Connection) -> bool:
    names = migration_names()
    if not names:
        return False
    try:
        applied = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = 'wilson'"
            )
        }
    except sqlite3.OperationalError:  # no migrations table yet
        return False
    return set(names) <= applied


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the pending migrations to the database at ``path`` (one process at a time)."""
    if _up_to_date(conn):
        return  # the common case: no need to import sqlite_utils (and pandas with it)
    from sqlite_utils import Database

    from . import schema  # sqlite_utils is slow to import: only when a store opens

    db = Database(conn)
    if not schema.migrations.pending(db):
        return
    # Two processes opening a new database at once must not both migrate it.
    lock_path = f"{path}.migrate.lock"
    lock_fd = None
    try:
        lock_fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o644)
        filelock.lock(lock_fd)
    except OSError:
        lock_fd = None  # a read-only folder: migrate without the lock
    try:
        if schema.migrations.pending(db):
            schema.apply(db)
    finally:
        if lock_fd is not None:
            # Removed while still held: a process waiting on this file finds
            # nothing pending, and one arriving later makes a new file.
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
            os.close(lock_fd)
