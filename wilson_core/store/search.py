"""Full-text search over prompts and responses (SQLite FTS5), indexed lazily.

The capture path must stay a single fast ``INSERT``, so there is no trigger:
the index ``interactions_fts`` (contentless, keyed by the interactions'
rowid) is brought up to date from a rowid watermark just before a search.
Interactions are never updated after capture, so rows past the watermark are
the only ones missing.
"""

from __future__ import annotations

import re
import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store

WATERMARK = "interactions_fts"
_TOKEN = re.compile(r"\w+\*?", re.UNICODE)


def sync(store: Store, batch: int = 50_000) -> int:
    """Index the interactions captured since the last sync; return how many were added."""
    from .store import transaction

    if getattr(store, "dialect", "sqlite") == "postgresql":
        return 0  # PostgreSQL keeps its full-text index itself
    conn = store.connection()
    added = 0
    while True:
        with transaction(conn):
            row = conn.execute(
                "SELECT last_rowid FROM search_index_state WHERE name = ?", (WATERMARK,)
            ).fetchone()
            last = row[0] if row else 0
            top = conn.execute(
                "SELECT max(rowid) FROM (SELECT rowid FROM interactions WHERE rowid > ? "
                "ORDER BY rowid LIMIT ?)",
                (last, batch),
            ).fetchone()[0]
            if top is None:
                return added
            cursor = conn.execute(
                "INSERT INTO interactions_fts (rowid, user_prompt, response_content, tool_calls) "
                "SELECT rowid, coalesce(user_prompt, ''), coalesce(response_content, ''), "
                "coalesce(tool_calls_json, '') FROM interactions WHERE rowid > ? AND rowid <= ?",
                (last, top),
            )
            added += cursor.rowcount
            conn.execute(
                "INSERT INTO search_index_state (name, last_rowid) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET last_rowid = excluded.last_rowid",
                (WATERMARK, top),
            )


def match_query(text: str) -> str | None:
    """A safe FTS5 query from what a person typed: every word must appear (``word*`` = prefix).

    Quotes and operators are not interpreted, so any text is a valid query;
    ``None`` when there is no word to search for.
    """
    terms = []
    for token in _TOKEN.findall(text or ""):
        prefix = token.endswith("*")
        word = token.rstrip("*")
        if word:
            terms.append('"' + word.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " ".join(terms) if terms else None


def search_rowids_sql() -> str:
    """SQL for the rowids matching ``?`` (a :func:`match_query` result), for ``i.rowid IN (...)``."""
    return "SELECT rowid FROM interactions_fts WHERE interactions_fts MATCH ?"


def search(store: Store, text: str, limit: int = 100) -> list[str]:
    """Ids of the newest interactions whose prompt, response or tool calls contain every word."""
    query = match_query(text)
    if query is None:
        return []
    sync(store)
    try:
        rows = store.connection().execute(
            f"SELECT id FROM interactions WHERE rowid IN ({search_rowids_sql()}) "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (query, int(limit)),
        )
        return [row[0] for row in rows]
    except sqlite3.OperationalError:  # pragma: no cover - match_query only builds valid queries
        return []
