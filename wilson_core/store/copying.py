"""``wilson db copy SRC DST``: a whole store from one backend to another (SQLite, PostgreSQL).

Rows are copied as they are stored (ids, content hashes, label history, pairs,
undo marks, counters), table by table in insertion order, so the copy exports
byte for byte what the original exports.  Every insert is idempotent: a copy
cut short is resumed by running it again, and copying twice adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .connections import transaction

#: the tables of a store, in the order they are copied, with their columns.
TABLES: dict[str, tuple[str, ...]] = {
    "blobs": ("hash", "kind", "content"),
    "runs": ("id", "call_type", "started_at", "ended_at", "metadata_json", "deleted_at"),
    "interactions": (
        "id", "run_id", "sequence_num", "call_type", "model", "provider", "system_hash", "user_prompt",
        "messages_json", "response_content", "tool_calls_json", "tools_hash", "params_json",
        "input_tokens", "output_tokens", "total_tokens", "duration_ms", "status", "error", "created_at",
        "context_hash", "ttft_ms",
    ),
    "tool_results": (
        "id", "interaction_id", "tool_call_id", "tool_name", "arguments_json", "content", "is_error",
        "duration_ms", "created_at",
    ),
    "pairs": ("id", "chosen_id", "rejected_id", "source", "annotator", "created_at", "undone_at"),
    "annotations": (
        "id", "interaction_id", "rating", "preference", "pair_id", "tags_json", "notes",
        "corrected_response", "source", "annotator", "status", "version", "created_at", "undone_at",
    ),
}
BATCH = 2000

_COUNTER_UPSERT = (
    "INSERT INTO capture_counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = "
    "CASE WHEN excluded.value > capture_counters.value THEN excluded.value ELSE capture_counters.value END"
)


def _rows(store: Any, sql: str) -> Iterator[Any]:
    conn = store.connection()
    stream = getattr(conn, "stream", None)
    if stream is not None:
        yield from stream(sql)
        return
    cursor = conn.execute(sql)
    while True:
        rows = cursor.fetchmany(BATCH)
        if not rows:
            return
        yield from rows


def _count(store: Any, table: str) -> int:
    return int(store.connection().execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _undone_or_updated(table: str) -> str | None:
    """The statement that brings a row copied before up to date (marks set since)."""
    if table in ("annotations", "pairs"):
        return f"UPDATE {table} SET undone_at = ? WHERE id = ? AND undone_at IS NULL"
    if table == "runs":
        return ("UPDATE runs SET ended_at = coalesce(ended_at, ?), deleted_at = coalesce(deleted_at, ?) "
                "WHERE id = ?")
    return None


def copy_store(
    source: Any,
    target: Any,
    *,
    progress: Callable[[str, int], None] | None = None,
    batch_size: int = BATCH,
) -> dict[str, dict[str, int]]:
    """Copy every row of ``source`` into ``target``; return ``{table: {source, copied, target}}``.

    ``copied`` counts the rows that were new in ``target``.  Each batch of
    ``batch_size`` rows is one transaction; ``progress(table, rows so far)`` is
    called after each.
    """
    report: dict[str, dict[str, int]] = {}
    for table, columns in TABLES.items():
        before = _count(target, table)
        seen = 0
        batch: list[tuple[Any, ...]] = []
        for row in _rows(source, f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid"):
            batch.append(tuple(row))
            seen += 1
            if len(batch) >= batch_size:
                _write(target, table, columns, batch)
                batch = []
                if progress is not None:
                    progress(table, seen)
        if batch:
            _write(target, table, columns, batch)
        after = _count(target, table)
        report[table] = {"source": seen, "copied": after - before, "target": after}
    counters = [tuple(row) for row in _rows(source, "SELECT name, value FROM capture_counters ORDER BY name")]
    if counters:
        with target.writing() as conn, transaction(conn):
            conn.executemany(_COUNTER_UPSERT, counters)
    report["capture_counters"] = {"source": len(counters), "copied": len(counters),
                                  "target": _count(target, "capture_counters")}
    return report


def _write(target: Any, table: str, columns: tuple[str, ...], batch: list[tuple[Any, ...]]) -> None:
    """One batch of rows into ``target`` in one transaction (new rows inserted, marks brought over)."""
    insert = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    update = _undone_or_updated(table)
    with target.writing() as conn, transaction(conn):
        conn.executemany(insert, batch)
        if update is not None:
            marks = [p for p in (_update_params(table, row, columns) for row in batch) if p]
            if marks:
                conn.executemany(update, marks)


def _update_params(table: str, row: tuple[Any, ...], columns: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The parameters of the update of a row that carries a mark (``None``: nothing to bring over)."""
    data = dict(zip(columns, row, strict=True))
    if table == "runs":
        if data["ended_at"] is None and data["deleted_at"] is None:
            return None
        return (data["ended_at"], data["deleted_at"], data["id"])
    if data["undone_at"] is None:
        return None
    return (data["undone_at"], data["id"])
