"""Reading simonw/llm's ``logs.db`` where its tables share a name with Wilson's.

llm has its own ``tool_results`` table (the results of its tool calls); the
statement that reads it lives here, under the store, so that no SQL naming one
of Wilson's table names is written outside ``wilson_core/store/``
(``tests/test_sql_ownership.py``).  The rest of llm's schema is read by
:mod:`wilson_core.importers.llm_logs`.
"""

from __future__ import annotations

import sqlite3


def tool_results_sql(has_exception: bool) -> str:
    """The rows of llm's ``tool_results`` (``response_id, name, output, tool_call_id, exception``)."""
    exception = "exception" if has_exception else "NULL AS exception"
    return f"SELECT response_id, name, output, tool_call_id, {exception} FROM tool_results ORDER BY id"


def tool_result_columns(conn: sqlite3.Connection) -> set[str]:
    """The columns of llm's ``tool_results`` table."""
    return {row[1] for row in conn.execute('PRAGMA table_info("tool_results")')}
