"""How rows are read back into records: interactions (with their blobs), runs, tool results."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from wilson_core import converter
from wilson_core.records import Interaction, Run, ToolCall, ToolResult

INTERACTION_COLUMNS = (
    "i.id, i.run_id, i.sequence_num, i.call_type, i.model, i.provider, s.content AS system_prompt, "
    "i.messages_json, i.response_content, i.tool_calls_json, t.content AS tools_json, "
    "i.params_json, i.input_tokens, i.output_tokens, i.total_tokens, i.duration_ms, "
    "i.status, i.error, i.created_at, i.ttft_ms"
)
INTERACTION_FROM = (
    "interactions i LEFT JOIN blobs s ON s.hash = i.system_hash "
    "LEFT JOIN blobs t ON t.hash = i.tools_hash"
)


def _tool_call_from_row(data: dict[str, Any]) -> ToolCall:
    return converter.structure(
        {
            "id": data["id"],
            "name": data["name"],
            "arguments": data.get("args") or {},
            "raw_arguments": data.get("raw_args"),
        },
        ToolCall,
    )


def interaction_from_row(row: sqlite3.Row | dict[str, Any]) -> Interaction:
    """Rebuild an :class:`Interaction` from a row selected with :data:`INTERACTION_COLUMNS`."""
    row = dict(row)
    messages = json.loads(row["messages_json"])
    if row.get("system_prompt") is not None:
        messages.insert(0, {"role": "system", "content": row["system_prompt"]})
    data = {
        "id": row["id"],
        "run_id": row["run_id"],
        "sequence_num": row["sequence_num"],
        "call_type": row["call_type"] or "",
        "provider": row["provider"] or "",
        "model": row["model"] or "",
        "messages": messages,
        "response_content": row["response_content"],
        "tool_calls": [
            converter.unstructure(_tool_call_from_row(c))
            for c in json.loads(row["tool_calls_json"] or "[]")
        ],
        "tools": json.loads(row["tools_json"] or "[]"),
        "params": json.loads(row["params_json"] or "{}"),
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "total_tokens": row["total_tokens"],
        "duration_ms": float(row["duration_ms"] or 0.0),
        "ttft_ms": row.get("ttft_ms"),
        "status": row["status"],
        "error": row["error"],
        "created_at": row["created_at"],
    }
    return converter.structure(data, Interaction)


def _run_from_row(row: sqlite3.Row) -> Run:
    return converter.structure(
        {
            "id": row["id"],
            "call_type": row["call_type"] or "",
            "started_at": row["started_at"],
            "ended_at": row["ended_at"],
            "metadata": json.loads(row["metadata_json"] or "{}"),
            "deleted": row["deleted_at"] is not None,
        },
        Run,
    )


def _tool_result_from_row(row: sqlite3.Row) -> ToolResult:
    return converter.structure(
        {
            "id": row["id"],
            "interaction_id": row["interaction_id"],
            "tool_call_id": row["tool_call_id"] or "",
            "name": row["tool_name"] or "",
            "arguments": json.loads(row["arguments_json"] or "{}"),
            "content": row["content"] or "",
            "is_error": bool(row["is_error"]),
            "duration_ms": row["duration_ms"],
            "created_at": row["created_at"],
        },
        ToolResult,
    )
