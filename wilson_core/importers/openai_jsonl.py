"""Import OpenAI chat-format JSONL: ``{"messages": [...], "tools": [...]}`` per line.

Each line is one conversation and becomes one run.  Every assistant message
becomes an interaction whose context is the messages before it and whose
response is that assistant message (text and tool calls), so a multi-turn
tool conversation is a run with one interaction per assistant turn; ``tool``
messages answering a turn's tool calls become its tool results.  The last
assistant message is therefore the last interaction's response.

Optional keys of a line: ``model`` (else the ``model`` argument), ``call_type``.
Other keys are ignored.  Ids come from the line's content (canonical JSON),
so importing the file again, or a copy of it, adds nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wilson_core.errors import RecordError
from wilson_core.importers import ImportBatch, Problems, stable_id
from wilson_core.messages import normalize_messages
from wilson_core.records import Interaction, Run, ToolCall, ToolResult, utcnow

ROLES = ("system", "developer", "user", "assistant", "tool")


def _content_text(content: Any) -> str | None:
    """Assistant content as text (a list of parts is joined)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, Mapping)
        )
    return str(content)


def _check_line(data: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(data, dict):
        raise ValueError(f"a line must be a JSON object, got {type(data).__name__}")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{index}] must be an object")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"messages[{index}] has role {role!r}; expected one of {', '.join(ROLES)}")
        if "tool_calls" in message and message["tool_calls"] is not None:
            if role != "assistant" or not isinstance(message["tool_calls"], list):
                raise ValueError(f"messages[{index}]: tool_calls must be a list on an assistant message")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant message: nothing to learn from")
    tools = data.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise ValueError("'tools' must be a list of tool schema objects")
    for field in ("model", "call_type"):
        if field in data and not isinstance(data[field], str):
            raise ValueError(f"{field!r} must be text")
    return normalize_messages(messages), tools


def _conversation(
    data: dict[str, Any],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    model: str,
    call_type: str,
    batch: ImportBatch,
    source: str,
) -> None:
    canonical = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    key = stable_id("openai-jsonl", canonical)
    created_at = utcnow()
    run_id = stable_id(key, "run")
    model = data.get("model") or model
    call_type = data.get("call_type") or call_type
    sequence = 0
    pending: dict[str, tuple[str, ToolCall]] = {}
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            call_id = str(message.get("tool_call_id") or "")
            interaction_id, call = pending.get(call_id, (None, None))
            if call is None:
                batch.skip("tool messages answering no earlier tool call")
                continue
            content = message.get("content")
            batch.tool_results.append(
                ToolResult(
                    id=stable_id(key, "tool_result", index),
                    interaction_id=interaction_id,
                    tool_call_id=call_id,
                    name=call.name,
                    arguments=dict(call.arguments),
                    content=content if isinstance(content, str) else json.dumps(content, ensure_ascii=False),
                    created_at=created_at,
                )
            )
            continue
        if message["role"] != "assistant":
            continue
        sequence += 1
        calls = tuple(
            ToolCall(
                id=c["id"],
                name=c["function"]["name"],
                arguments=c["function"]["arguments"],
                raw_arguments=c["function"].get("raw_arguments"),
            )
            for c in message.get("tool_calls") or ()
        )
        interaction = Interaction(
            id=stable_id(key, "interaction", sequence),
            run_id=run_id,
            sequence_num=sequence,
            call_type=call_type,
            provider="import",
            model=model,
            messages=messages[:index],
            response_content=_content_text(message.get("content")),
            tool_calls=calls,
            tools=tools,
            created_at=created_at,
        )
        batch.interactions.append(interaction)
        for call in calls:
            pending[call.id] = (interaction.id, call)
    batch.runs.append(
        Run(
            id=run_id,
            call_type=call_type,
            started_at=created_at,
            ended_at=created_at,
            metadata={"imported_from": "openai-jsonl", "source": source},
        )
    )


def read(
    path: str | os.PathLike[str], *, model: str = "unknown", call_type: str = "agent"
) -> ImportBatch:
    """Read and check every line; raise :class:`RecordError` naming each bad line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RecordError(f"no such file: {path}")
    source = str(path.resolve())
    batch = ImportBatch(source=source)
    problems = Problems(str(path))
    seen: set[str] = set()
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            where = f"line {number}"
            # invalid UTF-8 (a lone surrogate written as bytes, a stray byte) becomes U+FFFD, like
            # every text entering Wilson (wilson_core.text): the rest of the line is kept
            text = raw.decode("utf-8", "replace")
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.add(where, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            try:
                messages, tools = _check_line(data)
            except (ValueError, RecordError) as exc:
                problems.add(where, str(exc))
                continue
            digest = stable_id(json.dumps(data, ensure_ascii=False, sort_keys=True))
            if digest in seen:
                batch.skip("repeated lines")
                continue
            seen.add(digest)
            _conversation(data, messages, tools, model, call_type, batch, source)
    problems.raise_if_any()
    return batch


def import_openai_jsonl(
    store: Any, path: str | os.PathLike[str], *, model: str = "unknown", call_type: str = "agent"
) -> dict[str, Any]:
    """Read ``path`` (checked in full first), then write it into ``store`` in one transaction."""
    from wilson_core.importers import write_batch

    return write_batch(store, read(path, model=model, call_type=call_type))
