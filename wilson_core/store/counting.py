"""The SQL that counts an export's lines without building them (SQLite's JSON functions).

:mod:`wilson_core.exporting.counting` decides what to count; these are the
statements it runs.  A row is "fast" when its example cannot fail: its
prompt's tool calls and its answer are well formed, checked here
conservatively; every other row goes through the export's Python code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .selection import LABEL_JOIN, iter_rows

# Lean joins for counting: the blobs are not needed to decide whether a row makes a line.
COUNT_FROM = f"interactions i LEFT JOIN runs r ON r.id = i.run_id {LABEL_JOIN}"


#: the same without the label, for filters that do not read it.
UNLABELLED_FROM = "interactions i LEFT JOIN runs r ON r.id = i.run_id"


def annotated(condition: str) -> str:
    """SQL: ``i`` has an annotation (any version, any source) where ``condition`` holds.

    Every label field the filters read comes from one of the interaction's
    annotations, so a filter that needs, say, a rating can skip at once the
    rows none of whose annotations has one (most rows of a big database).
    """
    return f" AND i.id IN (SELECT interaction_id FROM annotations WHERE {condition})"


def label_filters(options: Any, *, rating: bool = True) -> str:
    """The :func:`annotated` conditions the filters of :func:`where_clause` imply."""
    sql = ""
    if rating and options.min_rating is not None:
        sql += annotated("rating >= :min_rating OR corrected_response IS NOT NULL")
    if options.tags:
        sql += annotated("tags_json IS NOT NULL")
    return sql


#: only answers to a context that another rated answer shares can be harvested into a pair.
SHARED_CONTEXT = (
    " AND i.context_hash IN (SELECT x.context_hash FROM interactions x"
    " WHERE x.id IN (SELECT interaction_id FROM annotations WHERE rating IS NOT NULL)"
    " GROUP BY x.context_hash HAVING count(*) > 1)"
)


def _clean_function(path: str) -> str:
    """SQL (over ``c.value``) true when ``tool_call`` accepts the call whose function is at ``path``."""
    return (
        f"json_type(c.value, '{path}name') = 'text' AND json_extract(c.value, '{path}name') != ''"
        f" AND coalesce(json_type(c.value, '{path}raw_arguments'), 'null') = 'null'"
        f" AND (CASE WHEN json_type(c.value, '{path}arguments') IS NOT NULL"
        f" THEN json_type(c.value, '{path}arguments') IN ('object', 'null')"
        f" ELSE coalesce(json_type(c.value, '{path}args'), 'null') IN ('object', 'null') END)"
    )


#: 1 when the tool call ``c`` (a json_each row) surely becomes a TRL tool call, else 0 (never NULL).
#: String arguments and anything unusual count as unsure: Python decides those.
CLEAN_CALL = (
    "(CASE WHEN c.type != 'object' THEN 0"
    " WHEN coalesce(json_type(c.value, '$.raw_args'), 'null') != 'null' THEN 0"
    " WHEN json_type(c.value, '$.function') = 'object' THEN"
    f" (CASE WHEN {_clean_function('$.function.')} THEN 1 ELSE 0 END)"
    f" ELSE (CASE WHEN {_clean_function('$.')} THEN 1 ELSE 0 END) END)"
)


def _clean_calls(array: str) -> str:
    """SQL true when the JSON array ``array`` holds only clean tool calls."""
    return f"NOT EXISTS (SELECT 1 FROM json_each({array}) c WHERE {CLEAN_CALL} = 0)"


_MESSAGE_CALLS_CLEAN = _clean_calls("m.value, '$.tool_calls'")

#: the stored context normalises without a malformed tool call (1 or 0, never NULL).
CLEAN_PROMPT = (
    "(CASE WHEN i.messages_json IS NULL THEN 0"
    " WHEN instr(i.messages_json, '\"tool_calls\"') = 0 THEN 1"
    " WHEN NOT json_valid(i.messages_json) OR json_type(i.messages_json) != 'array' THEN 0"
    " WHEN EXISTS (SELECT 1 FROM json_each(i.messages_json) m WHERE"
    " (CASE WHEN m.type != 'object' THEN 1"
    " WHEN coalesce(json_type(m.value, '$.tool_calls'), 'null') = 'null' THEN 0"
    " WHEN json_type(m.value, '$.tool_calls') != 'array' THEN 1"
    f" WHEN {_MESSAGE_CALLS_CLEAN} THEN 0 ELSE 1 END) = 1) THEN 0"
    " ELSE 1 END)"
)

_HAS_TEXT = "coalesce(i.response_content, '') != ''"

#: the answer is not empty and its tool calls are well formed (1 or 0, never NULL).
CLEAN_ANSWER = (
    "(CASE WHEN i.tool_calls_json IS NULL OR i.tool_calls_json = '' THEN "
    f"(CASE WHEN {_HAS_TEXT} THEN 1 ELSE 0 END)"
    " WHEN NOT json_valid(i.tool_calls_json) OR json_type(i.tool_calls_json) != 'array' THEN 0"
    " WHEN json_array_length(i.tool_calls_json) = 0 THEN "
    f"(CASE WHEN {_HAS_TEXT} THEN 1 ELSE 0 END)"
    f" WHEN {_clean_calls('i.tool_calls_json')} THEN 1 ELSE 0 END)"
)

#: the answer is text only (no tool calls): two such answers are the same turn exactly when
#: their texts are equal.
TEXT_ANSWER = f"(CASE WHEN i.tool_calls_json IS NULL AND {_HAS_TEXT} THEN 1 ELSE 0 END)"


def scan(
    conn: Any,
    where: str,
    params: dict[str, Any],
    fast: str,
    lines: str,
    columns: str = "",
    source: str = COUNT_FROM,
) -> tuple[int, list[int]]:
    """One pass over the selected rows: the lines of the ``fast`` ones, and the rowids of the others.

    ``lines`` is an SQL expression over the inner select (``fast`` and ``columns``).
    """
    sql = (
        f"SELECT total(CASE WHEN fast = 1 THEN {lines} END), group_concat(CASE WHEN fast = 0 THEN rid END)"
        f" FROM (SELECT i.rowid AS rid, {fast} AS fast{columns} FROM {source} WHERE {where})"
    )
    total, others = conn.execute(sql, params).fetchone()
    return int(total), [int(rowid) for rowid in others.split(",")] if others else []


def rows_among(
    conn: Any, where: str, params: dict[str, Any], rowids: list[int]
) -> Iterator[Any]:
    """The selected rows among ``rowids``, for the Python path."""
    for start in range(0, len(rowids), 500):
        chunk = ",".join(str(rowid) for rowid in rowids[start : start + 500])
        yield from iter_rows(conn, f"{where} AND i.rowid IN ({chunk})", params)




def harvest_candidates(conn: Any, where: str, params: dict[str, Any]) -> Iterator[tuple[str, str, int, int]]:
    """``(chosen, rejected, fast, differ)`` of the pairs harvesting may make from the selected rows."""
    sql = f"""
        WITH rated AS (
            SELECT * FROM (SELECT i.id, i.context_hash, i.tools_hash, l.rating AS rating,
                                  {CLEAN_PROMPT} AS clean_prompt, {TEXT_ANSWER} AS text_answer,
                                  i.response_content AS text
                           FROM {COUNT_FROM} WHERE {where}{SHARED_CONTEXT})
            WHERE rating IS NOT NULL)
        SELECT a.id, b.id, (a.clean_prompt AND a.text_answer AND b.text_answer) AS fast,
               a.text != b.text AS differ
        FROM rated a JOIN rated b
          ON a.context_hash = b.context_hash AND a.tools_hash IS b.tools_hash AND a.id != b.id
        WHERE a.rating >= :hi AND b.rating <= :lo
    """
    for row in conn.execute(sql, params):
        yield row[0], row[1], row[2], row[3]


def run_summaries(conn: Any, where: str, params: dict[str, Any], fast: str) -> list[Any]:
    """``(run_id, all fast, rated calls, calls below count_min_rating)`` of the selected runs."""
    sql = (
        "SELECT run_id, min(fast), total(rated), total(below) FROM ("
        f"SELECT i.run_id AS run_id, {fast} AS fast, l.rating AS rating,"
        " (l.rating IS NOT NULL OR l.corrected_response IS NOT NULL) AS rated,"
        " (l.corrected_response IS NULL AND l.rating < :count_min_rating) AS below"
        f" FROM {COUNT_FROM} WHERE {where}) GROUP BY run_id"
    )
    return conn.execute(sql, params).fetchall()


def run_rows(conn: Any, where: str, params: dict[str, Any], run_id: str) -> list[Any]:
    """The selected rows of one run, in run order."""
    from .selection import RUN_ORDER

    return list(iter_rows(conn, f"{where} AND i.run_id IS :count_run", {**params, "count_run": run_id}, RUN_ORDER))


#: SQL (over the selected row): the answer was corrected / is rated or corrected or chosen/rejected.
CORRECTED = "l.corrected_response IS NOT NULL"
#: the lines a rated row makes for KTO (over ``rating``, ``corrected``, ``preference``).
RATED_LINES = (
    "(CASE WHEN rating IS NOT NULL THEN (rating >= :kto_hi OR rating <= :kto_lo)"
    " WHEN corrected IS NOT NULL THEN 1"
    " ELSE coalesce(preference, '') IN ('chosen', 'rejected') END) + (corrected IS NOT NULL)"
)
RATED_COLUMNS = ", l.rating AS rating, l.corrected_response AS corrected, l.preference AS preference"
CORRECTION_COLUMNS = ", l.corrected_response != i.response_content AS differ"
RATED_ANNOTATION = "rating IS NOT NULL OR corrected_response IS NOT NULL OR preference IN ('chosen', 'rejected')"
CORRECTED_ANNOTATION = "corrected_response IS NOT NULL"
