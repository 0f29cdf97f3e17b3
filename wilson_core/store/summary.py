"""The CLI's views of a store: recent runs with their calls, and the numbers ``wilson stats`` prints."""

from __future__ import annotations

from typing import Any

#: the columns ``wilson stats`` groups interactions by.
GROUPABLE = ("call_type", "model", "provider", "status")


def recent_runs(conn: Any, limit: int) -> list[dict[str, Any]]:
    """Live runs, newest first, with their number of calls, errors and tokens."""
    return [
        dict(row)
        for row in conn.execute(
            """
            SELECT r.id, r.call_type, r.started_at, r.ended_at,
                   count(i.id) AS calls,
                   sum(CASE WHEN i.status = 'error' THEN 1 ELSE 0 END) AS errors,
                   sum(i.total_tokens) AS tokens
            FROM runs r LEFT JOIN interactions i ON i.run_id = r.id
            WHERE r.deleted_at IS NULL
            GROUP BY r.id ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?
            """,
            (limit,),
        )
    ]


def grouped_counts(conn: Any, column: str) -> dict[str, int]:
    """How many interactions per value of ``column`` (one of :data:`GROUPABLE`), most first."""
    if column not in GROUPABLE:
        raise ValueError(f"cannot group interactions by {column!r}")
    return {
        (row[0] if row[0] is not None else ""): row[1]
        for row in conn.execute(
            f"SELECT {column}, count(*) FROM interactions GROUP BY {column} ORDER BY count(*) DESC"
        )
    }


def token_totals(conn: Any) -> tuple[int, int, int, int]:
    """``(interactions, input tokens, output tokens, total tokens)``."""
    row = conn.execute(
        "SELECT count(*), sum(input_tokens), sum(output_tokens), sum(total_tokens) FROM interactions"
    ).fetchone()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)


def durations(conn: Any) -> list[float]:
    """Every recorded call duration in ms, ascending."""
    return [
        float(row[0])
        for row in conn.execute(
            "SELECT duration_ms FROM interactions WHERE duration_ms IS NOT NULL ORDER BY duration_ms"
        )
    ]


def count_by_provider(conn: Any, provider: str) -> int:
    return conn.execute("SELECT count(*) FROM interactions WHERE provider = ?", (provider,)).fetchone()[0]
