"""Counting the lines an export would write, without building them.

:func:`count_records` must equal the number of lines :func:`run_export`
writes.  Building every example in Python (parse the messages, normalise them,
build the record) costs about as much as the export itself, so the count
splits the selected rows in two:

- rows whose example cannot fail: the prompt's tool calls and the answer are
  well formed (checked in SQL with SQLite's JSON functions, conservatively),
  counted by SQLite alone;
- every other row (a malformed or unusual tool call, an empty answer, a tool
  call in an answer that must be compared), put through the same Python code
  as the export.

It falls back to the whole pipeline when an option needs per-example work
(``dedup``, ``max_tokens``) or when the exporter may refuse examples (its
:attr:`~wilson_core.interfaces.Exporter.keeps_every_example` is false).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from .options import ExportOptions
from .select import LABEL_ID, RATING, iter_rows, where_clause

# Lean joins for counting: the blobs are not needed to decide whether a row makes a line.
COUNT_FROM = (
    "interactions i "
    "LEFT JOIN runs r ON r.id = i.run_id "
    f"LEFT JOIN annotations l ON l.id = {LABEL_ID}"
)


#: the same without the label, for filters that do not read it.
UNLABELLED_FROM = "interactions i LEFT JOIN runs r ON r.id = i.run_id"


def _annotated(condition: str) -> str:
    """SQL: ``i`` has an annotation (any version, any source) where ``condition`` holds.

    Every label field the filters read comes from one of the interaction's
    annotations, so a filter that needs, say, a rating can skip at once the
    rows none of whose annotations has one (most rows of a big database).
    """
    return f" AND i.id IN (SELECT interaction_id FROM annotations WHERE {condition})"


def _label_filters(options: ExportOptions, *, rating: bool = True) -> str:
    """The :func:`_annotated` conditions the filters of :func:`where_clause` imply."""
    sql = ""
    if rating and options.min_rating is not None:
        sql += _annotated("rating >= :min_rating OR corrected_response IS NOT NULL")
    if options.tags:
        sql += _annotated("tags_json IS NOT NULL")
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


def keeps_every_example(exporter: Any) -> bool:
    """The exporter's ``keeps_every_example``, if its ``record`` is the one that promise was made for.

    A subclass that overrides ``record`` (it may filter) without declaring the
    flag again does not inherit it.
    """
    mro = type(exporter).__mro__
    declared = next((k for k in mro if "keeps_every_example" in vars(k)), None)
    recorder = next((k for k in mro if "record" in vars(k)), None)
    if declared is None or recorder is None or not vars(declared)["keeps_every_example"]:
        return False
    return issubclass(declared, recorder)


def fast_countable(options: ExportOptions, exporter: Any) -> bool:
    """Whether the count can skip building examples for rows that cannot fail."""
    return not options.dedup and options.max_tokens is None and keeps_every_example(exporter)


def _scan(
    conn: sqlite3.Connection,
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


def _rows(
    conn: sqlite3.Connection, where: str, params: dict[str, Any], rowids: list[int]
) -> Iterator[sqlite3.Row]:
    """The selected rows among ``rowids``, for the Python path."""
    for start in range(0, len(rowids), 500):
        chunk = ",".join(str(rowid) for rowid in rowids[start : start + 500])
        yield from iter_rows(conn, f"{where} AND i.rowid IN ({chunk})", params)


def _count_answers(conn: sqlite3.Connection, options: ExportOptions, stats: Any) -> int:
    from .building import _answer_example

    where, params = where_clause(options)
    if options.min_rating is None and not options.tags:
        # no filter reads the label: skip finding it (a correction with a bad answer goes to Python)
        fast = f"({CLEAN_PROMPT} AND {CLEAN_ANSWER})"
        count, others = _scan(conn, where, params, fast, "1", source=UNLABELLED_FROM)
    else:
        where += _label_filters(options)
        fast = f"({CLEAN_PROMPT} AND (l.corrected_response IS NOT NULL OR {CLEAN_ANSWER}))"
        count, others = _scan(conn, where, params, fast, "1")
    for row in _rows(conn, where, params, others):
        count += _answer_example(row, stats) is not None
    return count


def _count_ratings(conn: sqlite3.Connection, options: ExportOptions, stats: Any) -> int:
    from .building import _rated_row_examples, rated_where

    where, params = rated_where(options)
    where += _label_filters(options) + _annotated(
        "rating IS NOT NULL OR corrected_response IS NOT NULL OR preference IN ('chosen', 'rejected')"
    )
    params = {**params, "kto_hi": options.kto_desirable, "kto_lo": options.kto_undesirable}
    fast = f"({CLEAN_PROMPT} AND {CLEAN_ANSWER})"
    lines = (
        "(CASE WHEN rating IS NOT NULL THEN (rating >= :kto_hi OR rating <= :kto_lo)"
        " WHEN corrected IS NOT NULL THEN 1"
        " ELSE coalesce(preference, '') IN ('chosen', 'rejected') END) + (corrected IS NOT NULL)"
    )
    columns = f", {RATING} AS rating, l.corrected_response AS corrected, l.preference AS preference"
    count, others = _scan(conn, where, params, fast, lines, columns)
    for row in _rows(conn, where, params, others):
        count += len(_rated_row_examples(row, options, stats))
    return count


def _count_pairs(conn: sqlite3.Connection, options: ExportOptions, stats: Any) -> int:
    from .building import _correction_pair, _explicit_pair_examples, _harvested_pair

    seen: set[tuple[str, str]] = set()
    count = sum(1 for _ in _explicit_pair_examples(conn, options, stats, seen))
    where, params = where_clause(options, rating=False)
    where += _label_filters(options, rating=False)
    corrections = f"{where} AND l.corrected_response IS NOT NULL" + _annotated("corrected_response IS NOT NULL")
    fast = f"({CLEAN_PROMPT} AND {TEXT_ANSWER})"
    columns = ", l.corrected_response != i.response_content AS differ"
    lines, others = _scan(conn, corrections, params, fast, "differ", columns)
    count += lines
    for row in _rows(conn, corrections, params, others):
        count += _correction_pair(row, stats) is not None
    if not options.harvest_pairs:
        return count
    params = {**params, "hi": options.kto_desirable, "lo": options.kto_undesirable}
    sql = f"""
        WITH rated AS (
            SELECT * FROM (SELECT i.id, i.context_hash, i.tools_hash, {RATING} AS rating,
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
    for chosen_id, rejected_id, fast_pair, differ in conn.execute(sql, params):
        if (chosen_id, rejected_id) in seen:
            continue
        if fast_pair:
            count += bool(differ)
        else:
            count += _harvested_pair(conn, options, chosen_id, rejected_id, stats) is not None
    return count


def _count_runs(conn: sqlite3.Connection, options: ExportOptions, stats: Any) -> int:
    from .building import _run_example

    where, params = where_clause(options, rating=False)
    where += _label_filters(options, rating=False)
    fast = f"({CLEAN_PROMPT} AND (l.corrected_response IS NOT NULL OR {CLEAN_ANSWER}))"
    sql = (
        "SELECT run_id, min(fast), total(rated), total(below) FROM ("
        f"SELECT i.run_id AS run_id, {fast} AS fast, {RATING} AS rating,"
        f" ({RATING} IS NOT NULL OR l.corrected_response IS NOT NULL) AS rated,"
        f" (l.corrected_response IS NULL AND {RATING} < :count_min_rating) AS below"
        f" FROM {COUNT_FROM} WHERE {where}) GROUP BY run_id"
    )
    params = {**params, "count_min_rating": options.min_rating}
    count = 0
    order = "r.started_at, i.run_id, i.sequence_num, i.rowid"
    for run_id, all_fast, rated, below in conn.execute(sql, params).fetchall():
        if options.min_rating is not None and (not rated or below):
            continue  # the run has no rated call, or one below the minimum
        if all_fast:
            count += 1
            continue
        rows = list(iter_rows(conn, f"{where} AND i.run_id IS :count_run", {**params, "count_run": run_id}, order))
        count += _run_example(conn, rows, options, stats) is not None
    return count


def count_fast(store: Any, options: ExportOptions, needs: str, stats: Any) -> int:
    """The line count for an exporter that keeps every example, without building most of them."""
    conn = store.connection()
    if needs == "answers":
        if options.granularity == "run":
            return _count_runs(conn, options, stats)
        return _count_answers(conn, options, stats)
    if needs == "ratings":
        return _count_ratings(conn, options, stats)
    if needs == "pairs":
        return _count_pairs(conn, options, stats)
    raise ValueError(needs)
