"""The SQL of ``wilson doctor``: integrity, schema version, orphaned rows, row counts;
on PostgreSQL also the server and the role's privileges."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

#: the tables ``wilson doctor`` counts, and whose privileges it reports on PostgreSQL.
TABLES = ("runs", "interactions", "tool_results", "annotations", "pairs", "blobs", "capture_counters")

#: name -> query counting rows that point at something that is not there.
ORPHANS = {
    "interactions without their run": (
        "SELECT count(*) FROM interactions i WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = i.run_id)"
    ),
    "interactions whose system prompt blob is missing": (
        "SELECT count(*) FROM interactions i WHERE i.system_hash IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = i.system_hash)"
    ),
    "interactions whose tool schemas blob is missing": (
        "SELECT count(*) FROM interactions i WHERE i.tools_hash IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = i.tools_hash)"
    ),
    "tool results of a missing interaction": (
        "SELECT count(*) FROM tool_results t WHERE t.interaction_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM interactions i WHERE i.id = t.interaction_id)"
    ),
    "labels of a missing interaction": (
        "SELECT count(*) FROM annotations a "
        "WHERE NOT EXISTS (SELECT 1 FROM interactions i WHERE i.id = a.interaction_id)"
    ),
    "pairs with a missing answer": (
        "SELECT count(*) FROM pairs p WHERE NOT EXISTS (SELECT 1 FROM interactions i WHERE i.id = p.chosen_id) "
        "OR NOT EXISTS (SELECT 1 FROM interactions i WHERE i.id = p.rejected_id)"
    ),
}


def integrity(conn: sqlite3.Connection, max_errors: int = 20) -> list[str]:
    """``PRAGMA integrity_check``: an empty list when the file is sound."""
    rows = [row[0] for row in conn.execute(f"PRAGMA integrity_check({int(max_errors)})")]
    return [] if rows == ["ok"] else rows


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """The names of Wilson's migrations recorded in the database, oldest first."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'wilson' ORDER BY id"
        )
    ]


def counters(conn: sqlite3.Connection) -> dict[str, int]:
    """The capture counters (spooled, replayed, quarantined, dropped, ...)."""
    return {row[0]: row[1] for row in conn.execute("SELECT name, value FROM capture_counters")}


def orphans(conn: Any, errors: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)) -> dict[str, int]:
    """How many rows of each kind point at something that is missing.

    A query that raises one of ``errors`` (a table of a later migration that is
    not there) is left out.
    """
    found: dict[str, Any] = {}
    for name, sql in ORPHANS.items():
        try:
            found[name] = conn.execute(sql).fetchone()[0]
        except errors:
            continue
    return found


def row_counts(conn: Any, tables: Sequence[str] = TABLES) -> dict[str, int]:
    """How many rows each of ``tables`` (names from :data:`TABLES`) holds."""
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"not a Wilson table: {sorted(unknown)}")
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}


# -- PostgreSQL ------------------------------------------------------------------------


def postgres_server(conn: Any) -> dict[str, str]:
    """The server's version, and the role and database this connection uses."""
    row = conn.execute("SELECT current_setting('server_version'), current_user, current_database()").fetchone()
    return {"version": row[0], "user": row[1], "database": row[2]}


def postgres_has_schema(conn: Any) -> bool:
    """Whether Wilson's migration ledger is in this database (Wilson made it)."""
    return bool(conn.execute("SELECT to_regclass('wilson_migrations') IS NOT NULL").fetchone()[0])


def postgres_applied_migrations(conn: Any) -> list[str]:
    """The names of Wilson's migrations recorded in the database, oldest first."""
    return [row[0] for row in conn.execute(
        "SELECT name FROM wilson_migrations WHERE migration_set = 'wilson' ORDER BY rowid"
    )]


def postgres_privileges(conn: Any, tables: Sequence[str] = TABLES) -> dict[str, list[str]]:
    """What the connection's role may do on each of ``tables`` that exists (``SELECT``, ``INSERT``, ``UPDATE``)."""
    rows = conn.execute(
        "SELECT c.relname, has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'INSERT'), "
        "has_table_privilege(c.oid, 'UPDATE') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname = ANY(?)",
        (list(tables),),
    ).fetchall()
    found = {row[0]: [name for name, ok in zip(("SELECT", "INSERT", "UPDATE"), row[1:], strict=True) if ok] for row in rows}
    return {table: found[table] for table in tables if table in found}
