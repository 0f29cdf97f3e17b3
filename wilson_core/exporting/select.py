"""Reading the selected rows of an export: their messages, tools, tool calls and tags.

The selection itself (which interactions, with the label that counts) is the
store's: :mod:`wilson_core.store.selection`, re-exported here.  The label that
counts is the store's view ``effective_labels``: the newest current human label
(source ``human``, ``import`` or ``rule`` with status ``accepted``), with the
rating of the newest of them that has one; judge labels (not ``rejected``)
count only with ``include_judge`` and only where no human label exists.
Failed calls and calls of deleted runs are never exported.
"""

from __future__ import annotations

import json
from typing import Any

from wilson_core.store.selection import (  # noqa: F401 (the selection, re-exported)
    COLUMNS,
    FROM,
    RATING,
    count_rows,
    explicit_pairs,
    harvested_pairs,
    iter_rows,
    rows_by_id,
    select_sql,
    tool_results_for,
    where_clause,
)

HUMAN_SOURCES = ("human", "import", "rule")


def context_of(row: Any) -> list[dict[str, Any]]:
    """The messages a stored call saw, system prompt first."""
    messages = json.loads(row["messages_json"])
    if row["system_prompt"] is not None:
        messages.insert(0, {"role": "system", "content": row["system_prompt"]})
    return messages


_TOOLS_CACHE: dict[str, list[dict[str, Any]]] = {}


def tools_of(row: Any) -> list[dict[str, Any]]:
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


def tool_calls_of(row: Any) -> list[dict[str, Any]]:
    return json.loads(row["tool_calls_json"]) if row["tool_calls_json"] else []


def tags_of(row: Any) -> list[str]:
    return json.loads(row["tags_json"]) if row["tags_json"] else []
