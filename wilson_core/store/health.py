"""The SQL of ``wilson doctor``: integrity, schema version, orphaned rows."""

from __future__ import annotations

import sqlite3
from typing import Any

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


def orphans(conn: sqlite3.Connection) -> dict[str, int]:
    """How many rows of each kind point at something that is missing."""
    found: dict[str, Any] = {}
    for name, sql in ORPHANS.items():
        try:
            found[name] = conn.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:  # a table of a later migration that is not there
            continue
    return found
