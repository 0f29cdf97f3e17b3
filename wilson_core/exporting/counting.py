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

from typing import Any

from wilson_core.store import counting as sql

from .options import ExportOptions
from .select import where_clause


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


def _count_answers(conn: Any, options: ExportOptions, stats: Any) -> int:
    from .building import _answer_example

    where, params = where_clause(options)
    if options.min_rating is None and not options.tags:
        # no filter reads the label: skip finding it (a correction with a bad answer goes to Python)
        fast = f"({sql.CLEAN_PROMPT} AND {sql.CLEAN_ANSWER})"
        count, others = sql.scan(conn, where, params, fast, "1", source=sql.UNLABELLED_FROM)
    else:
        where += sql.label_filters(options)
        fast = f"({sql.CLEAN_PROMPT} AND ({sql.CORRECTED} OR {sql.CLEAN_ANSWER}))"
        count, others = sql.scan(conn, where, params, fast, "1")
    for row in sql.rows_among(conn, where, params, others):
        count += _answer_example(row, stats) is not None
    return count


def _count_ratings(conn: Any, options: ExportOptions, stats: Any) -> int:
    from .building import _rated_row_examples, rated_where

    where, params = rated_where(options)
    where += sql.label_filters(options) + sql.annotated(sql.RATED_ANNOTATION)
    params = {**params, "kto_hi": options.kto_desirable, "kto_lo": options.kto_undesirable}
    fast = f"({sql.CLEAN_PROMPT} AND {sql.CLEAN_ANSWER})"
    count, others = sql.scan(conn, where, params, fast, sql.RATED_LINES, sql.RATED_COLUMNS)
    for row in sql.rows_among(conn, where, params, others):
        count += len(_rated_row_examples(row, options, stats))
    return count


def _count_pairs(conn: Any, options: ExportOptions, stats: Any) -> int:
    from .building import _correction_pair, _explicit_pair_examples, _harvested_pair

    seen: set[tuple[str, str]] = set()
    count = sum(1 for _ in _explicit_pair_examples(conn, options, stats, seen))
    where, params = where_clause(options, rating=False)
    where += sql.label_filters(options, rating=False)
    corrections = f"{where} AND {sql.CORRECTED}" + sql.annotated(sql.CORRECTED_ANNOTATION)
    fast = f"({sql.CLEAN_PROMPT} AND {sql.TEXT_ANSWER})"
    lines, others = sql.scan(conn, corrections, params, fast, "differ", sql.CORRECTION_COLUMNS)
    count += lines
    for row in sql.rows_among(conn, corrections, params, others):
        count += _correction_pair(row, stats) is not None
    if not options.harvest_pairs:
        return count
    params = {**params, "hi": options.kto_desirable, "lo": options.kto_undesirable}
    for chosen_id, rejected_id, fast_pair, differ in sql.harvest_candidates(conn, where, params):
        if (chosen_id, rejected_id) in seen:
            continue
        if fast_pair:
            count += bool(differ)
        else:
            count += _harvested_pair(conn, options, chosen_id, rejected_id, stats) is not None
    return count


def _count_runs(conn: Any, options: ExportOptions, stats: Any) -> int:
    from .building import _run_example

    where, params = where_clause(options, rating=False)
    where += sql.label_filters(options, rating=False)
    fast = f"({sql.CLEAN_PROMPT} AND ({sql.CORRECTED} OR {sql.CLEAN_ANSWER}))"
    params = {**params, "count_min_rating": options.min_rating}
    count = 0
    for run_id, all_fast, rated, below in sql.run_summaries(conn, where, params, fast):
        if options.min_rating is not None and (not rated or below):
            continue  # the run has no rated call, or one below the minimum
        if all_fast:
            count += 1
            continue
        rows = sql.run_rows(conn, where, params, run_id)
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
