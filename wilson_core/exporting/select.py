"""Selecting interactions and their current labels from the store, streaming.

The label that counts for an interaction is the newest current human label
(source ``human``, ``import`` or ``rule`` with status ``accepted``), with the
rating of the newest of them that has one (rule labels from pair harvesting
carry none), as :func:`wilson_core.annotations.effective_label` says; judge
labels (source ``judge``, not ``rejected``) count only with ``include_judge``
and only where no human label exists.  Failed calls and
calls of deleted runs are never exported.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from .options import ExportOptions

HUMAN_SOURCES = ("human", "import", "rule")

#: which current labels count: human sources accepted; judge proposals only with include_judge.
ELIGIBLE = (
    "((a.source IN ('human', 'import', 'rule') AND a.status = 'accepted')"
    " OR (:include_judge AND a.source = 'judge' AND a.status != 'rejected'))"
)

#: the label that counts for ``i``: the newest eligible one, human before judge.
LABEL_ID = (
    "(SELECT a.id FROM current_annotations a WHERE a.interaction_id = i.id AND " + ELIGIBLE
    + " ORDER BY a.source = 'judge', a.created_at DESC, a.version DESC LIMIT 1)"
)

#: its rating: from the newest eligible label of the same kind that has one.
RATING = (
    "(CASE WHEN l.id IS NULL THEN NULL WHEN l.rating IS NOT NULL THEN l.rating"
    " ELSE (SELECT a.rating FROM current_annotations a"
    " WHERE a.interaction_id = i.id AND " + ELIGIBLE
    + " ORDER BY a.source = 'judge', a.rating IS NULL, a.created_at DESC, a.version DESC LIMIT 1) END)"
)

COLUMNS = (
    "i.id, i.run_id, i.sequence_num, i.call_type, i.model, i.provider, s.content AS system_prompt, "
    "i.messages_json, i.response_content, i.tool_calls_json, t.content AS tools_json, "
    "i.created_at, i.context_hash, i.tools_hash, "
    f"{RATING} AS rating, l.preference, l.tags_json, l.corrected_response, l.source AS label_source"
)

# One indexed look-up per row (no materialised label table), so rows stream in capture order.
FROM = (
    "interactions i "
    "LEFT JOIN runs r ON r.id = i.run_id "
    "LEFT JOIN blobs s ON s.hash = i.system_hash "
    "LEFT JOIN blobs t ON t.hash = i.tools_hash "
    f"LEFT JOIN annotations l ON l.id = {LABEL_ID}"
)


def _in(column: str, name: str, values: tuple[str, ...], params: dict[str, Any]) -> str:
    names = []
    for index, value in enumerate(values):
        key = f"{name}{index}"
        params[key] = value
        names.append(f":{key}")
    return f"{column} IN ({', '.join(names)})"


def where_clause(options: ExportOptions, *, rating: bool = True) -> tuple[str, dict[str, Any]]:
    """The SQL conditions (over ``i``, ``r``, ``l``) of ``options``' filters, and their parameters."""
    params: dict[str, Any] = {"include_judge": int(options.include_judge)}
    conditions = ["i.status = 'ok'", "r.deleted_at IS NULL"]
    if options.call_types:
        conditions.append(_in("i.call_type", "call_type", options.call_types, params))
    if options.models:
        conditions.append(_in("i.model", "model", options.models, params))
    if options.providers:
        conditions.append(_in("i.provider", "provider", options.providers, params))
    if options.since:
        params["since"] = options.since
        conditions.append("i.created_at >= :since")
    if options.until:
        params["until"] = options.until
        conditions.append("i.created_at < :until")
    for index, tag in enumerate(options.tags):
        params[f"tag{index}"] = tag
        conditions.append(f"EXISTS (SELECT 1 FROM json_each(l.tags_json) WHERE value = :tag{index})")
    if rating and options.min_rating is not None:
        params["min_rating"] = int(options.min_rating)
        conditions.append(f"({RATING} >= :min_rating OR l.corrected_response IS NOT NULL)")
    return " AND ".join(conditions), params


def select_sql(where: str, order_by: str = "i.created_at, i.rowid") -> str:
    return f"SELECT {COLUMNS} FROM {FROM} WHERE {where} ORDER BY {order_by}"


def iter_rows(
    conn: sqlite3.Connection, where: str, params: dict[str, Any], order_by: str = "i.created_at, i.rowid"
) -> Iterator[sqlite3.Row]:
    """Stream the selected rows in batches (memory does not grow with the number of rows)."""
    cursor = conn.execute(select_sql(where, order_by), params)
    try:
        while True:
            rows = cursor.fetchmany(2000)
            if not rows:
                return
            yield from rows
    finally:
        cursor.close()


def count_rows(conn: sqlite3.Connection, where: str, params: dict[str, Any]) -> int:
    sql = f"SELECT count(*) FROM {FROM} WHERE {where}"
    return conn.execute(sql, params).fetchone()[0]


def rows_by_id(conn: sqlite3.Connection, ids: list[str], options: ExportOptions) -> dict[str, sqlite3.Row]:
    """Rows of the given interactions (failed calls and deleted runs left out)."""
    if not ids:
        return {}
    params: dict[str, Any] = {"include_judge": int(options.include_judge)}
    where = "i.status = 'ok' AND r.deleted_at IS NULL AND " + _in("i.id", "id", tuple(ids), params)
    return {row["id"]: row for row in conn.execute(select_sql(where), params)}


def context_of(row: sqlite3.Row) -> list[dict[str, Any]]:
    """The messages a stored call saw, system prompt first."""
    messages = json.loads(row["messages_json"])
    if row["system_prompt"] is not None:
        messages.insert(0, {"role": "system", "content": row["system_prompt"]})
    return messages


_TOOLS_CACHE: dict[str, list[dict[str, Any]]] = {}


def tools_of(row: sqlite3.Row) -> list[dict[str, Any]]:
    """The tool schemas offered to a call (parsed once per distinct schema set; do not mutate)."""
    key = row["tools_hash"]
    if not key:
        return []
    tools = _TOOLS_CACHE.get(key)
    if tools is None:
        if len(_TOOLS_CACHE) > 512:
            _TOOLS_CACHE.clear()
        tools = _TOOLS_CACHE[key] = json.loads(row["tools_json"]) if row["tools_json"] else []
    return tools


def tool_calls_of(row: sqlite3.Row) -> list[dict[str, Any]]:
    return json.loads(row["tool_calls_json"]) if row["tool_calls_json"] else []


def tags_of(row: sqlite3.Row) -> list[str]:
    return json.loads(row["tags_json"]) if row["tags_json"] else []


def tool_results_for(conn: sqlite3.Connection, interaction_ids: list[str]) -> dict[str, list[sqlite3.Row]]:
    """Recorded tool results per interaction, in the order they were recorded."""
    if not interaction_ids:
        return {}
    marks = ", ".join("?" for _ in interaction_ids)
    result: dict[str, list[sqlite3.Row]] = {}
    for row in conn.execute(
        f"SELECT * FROM tool_results WHERE interaction_id IN ({marks}) ORDER BY created_at, rowid",
        interaction_ids,
    ):
        result.setdefault(row["interaction_id"], []).append(row)
    return result


def explicit_pairs(conn: sqlite3.Connection, options: ExportOptions) -> Iterator[sqlite3.Row]:
    """Current pairs (not undone) from accepted sources, oldest first."""
    sources = list(HUMAN_SOURCES) + (["judge"] if options.include_judge else [])
    marks = ", ".join("?" for _ in sources)
    yield from conn.execute(
        f"SELECT id, chosen_id, rejected_id, source FROM pairs "
        f"WHERE undone_at IS NULL AND source IN ({marks}) ORDER BY created_at, rowid",
        sources,
    )


def harvested_pairs(
    conn: sqlite3.Connection, options: ExportOptions, where: str, params: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    """(chosen, rejected) ids of answers to the same context and tools rated high and low."""
    params = {**params, "hi": options.kto_desirable, "lo": options.kto_undesirable}
    sql = f"""
        WITH rated AS (
            SELECT * FROM (SELECT i.id, i.context_hash, i.tools_hash, {RATING} AS rating, i.created_at
                           FROM {FROM} WHERE {where} AND i.context_hash IS NOT NULL)
            WHERE rating IS NOT NULL)
        SELECT a.id AS chosen_id, b.id AS rejected_id FROM rated a JOIN rated b
          ON a.context_hash = b.context_hash AND a.tools_hash IS b.tools_hash AND a.id != b.id
        WHERE a.rating >= :hi AND b.rating <= :lo
        ORDER BY a.created_at, b.created_at
    """
    for row in conn.execute(sql, params):
        yield row["chosen_id"], row["rejected_id"]
