"""Chat messages and tool calls: normalising what apps and providers send.

Apps speak the OpenAI shape (tool call arguments as JSON *strings*); chat
templates and TRL want arguments as *dicts*.  Wilson stores the dict shape and
keeps malformed argument text verbatim in ``ToolCall.raw_arguments``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import RecordError
from .records import ToolCall, new_id
from .text import clean_text as clean_text  # the text boundary, re-exported

_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def parse_arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Tool-call arguments as a dict, and the raw text when it was not a JSON object."""
    if raw is None or raw == "":
        return {}, None
    if isinstance(raw, Mapping):
        return dict(raw), None
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            return {}, raw
        if isinstance(value, dict):
            return value, None
        return {}, raw
    return {}, str(raw)


def tool_call_from_openai(data: Mapping[str, Any]) -> ToolCall:
    """A :class:`ToolCall` from an OpenAI / chat-template tool call dict.

    Accepts ``{"id", "type": "function", "function": {"name", "arguments"}}``
    and the flat ``{"id", "name", "arguments"|"args"}`` shape Wilson's own
    database uses.
    """
    if not isinstance(data, Mapping):
        raise RecordError(f"tool call must be an object, got {type(data).__name__}")
    function = data.get("function") if isinstance(data.get("function"), Mapping) else data
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise RecordError(f"tool call without a name: {json.dumps(data, default=str)[:200]}")
    raw = function.get("arguments", function.get("args"))
    arguments, raw_text = parse_arguments(raw)
    return ToolCall(
        id=str(data.get("id") or f"call_{new_id()[:12]}"),
        name=name,
        arguments=arguments,
        raw_arguments=raw_text,
    )


def normalize_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copy ``messages`` into Wilson's stored shape (dict arguments, clean text)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        raise RecordError("messages must be a list of {'role': ..., 'content': ...} objects")
    result = []
    for index, message in enumerate(messages):
        if (type(message) is not dict and not isinstance(message, Mapping)) or "role" not in message:
            raise RecordError(f"message {index} must be an object with a 'role'")
        # top-level text cleaned for the provider; the record cleans every level (wilson_core.text)
        copy = {key: clean_text(value) for key, value in message.items()}
        if copy.get("tool_calls"):
            calls = []
            for raw in copy["tool_calls"]:
                call = tool_call_from_openai(raw)
                entry = {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                if call.raw_arguments is not None:
                    entry["function"]["raw_arguments"] = call.raw_arguments
                calls.append(entry)
            copy["tool_calls"] = calls
        result.append(copy)
    return result


def to_openai_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The OpenAI wire shape: tool call arguments as JSON strings."""
    result = []
    for message in messages:
        copy = dict(message)
        if copy.get("tool_calls"):
            copy["tool_calls"] = [
                {
                    "id": call.get("id"),
                    "type": "function",
                    "function": {
                        "name": call["function"]["name"],
                        "arguments": call["function"].get("raw_arguments")
                        or json.dumps(call["function"].get("arguments") or {}, ensure_ascii=False),
                    },
                }
                for call in copy["tool_calls"]
            ]
        result.append(copy)
    return result


def parse_tagged_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """Split model output using ``<tool_call>{json}</tool_call>`` into text and tool calls.

    Local models (ChatML / Qwen / Wilson's tiny models) write tool calls this
    way.  Malformed JSON becomes a call named ``"?"`` only when no name can be
    found; otherwise its raw text is kept in ``raw_arguments``.
    """
    calls: list[ToolCall] = []
    for match in _TOOL_CALL_TAG.finditer(text):
        body = match.group(1)
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, RecursionError):
            name_match = re.search(r'"name"\s*:\s*"([^"]+)"', body)
            calls.append(
                ToolCall(
                    id=f"call_{new_id()[:12]}",
                    name=name_match.group(1) if name_match else "?",
                    arguments={},
                    raw_arguments=body,
                )
            )
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            arguments, raw = parse_arguments(data.get("arguments", data.get("parameters")))
            calls.append(
                ToolCall(
                    id=f"call_{new_id()[:12]}",
                    name=data["name"],
                    arguments=arguments,
                    raw_arguments=raw,
                )
            )
        else:
            calls.append(
                ToolCall(id=f"call_{new_id()[:12]}", name="?", arguments={}, raw_arguments=body)
            )
    content = _TOOL_CALL_TAG.sub("", text).strip() if calls else text
    return content, calls
