"""Reading an Open Accountant Wilson ``data.db`` as it is (for :mod:`wilson_core.importers.wilson_db`).

Its tables are ``llm_interactions``, ``llm_tool_results`` and
``interaction_annotations``; the file is opened read-only and never changed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from wilson_core.errors import RecordError

INTERACTIONS = "llm_interactions"
TOOL_RESULTS = "llm_tool_results"
ANNOTATIONS = "interaction_annotations"


def open_source(path: Path) -> sqlite3.Connection:
    """A read-only connection to the Wilson database at ``path``, or :class:`RecordError`."""
    if not path.is_file():
        raise RecordError(f"no such file: {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise RecordError(f"{path} is not an SQLite database ({exc})") from None
    return conn


def columns(conn: sqlite3.Connection, table: str) -> list[str] | None:
    """The column names of ``table`` (one of the three above), ``None`` when it does not exist."""
    if table not in (INTERACTIONS, TOOL_RESULTS, ANNOTATIONS):
        raise ValueError(f"not a table of a Wilson database: {table!r}")
    rows = conn.execute(f"PRAGMA table_info({table})").fetchall()
    return [r["name"] for r in rows] or None


def interactions(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every interaction row (with ``_rowid``), by run and sequence."""
    return conn.execute(
        "SELECT rowid AS _rowid, * FROM llm_interactions ORDER BY run_id, sequence_num, created_at, rowid"
    ).fetchall()


def tool_results(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT rowid AS _rowid, * FROM llm_tool_results ORDER BY created_at, rowid").fetchall()


def annotations(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT rowid AS _rowid, * FROM interaction_annotations ORDER BY annotated_at, rowid"
    ).fetchall()
