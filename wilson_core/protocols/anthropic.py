"""Anthropic messages (``POST /v1/messages``), streamed or not.

Mapped onto the same stored shape as OpenAI traffic, so exports come out
alike: ``system`` (text or text blocks) is the first message; an assistant
turn's ``text`` blocks are its content and its ``tool_use`` blocks its
``tool_calls`` (``input`` as the arguments dict); a user turn's
``tool_result`` blocks become ``role: "tool"`` messages (``tool_call_id`` =
``tool_use_id``, the tool's name from the call), placed before the turn's
text.  Tools ``{"name", "description", "input_schema"}`` are stored as
function tools.  A stream is SSE: ``message_start``, ``content_block_start``
/ ``_delta`` (``text_delta``, ``input_json_delta`` with ``partial_json`` cut
anywhere) / ``_stop``, ``message_delta`` (stop reason, cumulative usage),
``message_stop``; ``error`` events may come at any point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from wilson_core.messages import parse_arguments
from wilson_core.records import STATUS_ERROR, ToolCall, new_id

from .common import Assembler as _Assembler
from .common import (
    ProtocolError,
    Request,
    Result,
    answer,
    as_object,
    error_message,
    function_tool,
    http_error_text,
    integer,
    joined,
    mapping,
    request_of,
    string,
    tool_call,
    tool_entry,
)

NAME = "anthropic"
PATH = "/v1/messages"
_NOT_PARAMS = {"model", "messages", "system", "tools", "stream"}

#: a readable error from an HTTP error body.
error_text = http_error_text


def _text_blocks(blocks: Any) -> str:
    if isinstance(blocks, str):
        return blocks
    return (
        "".join(
            b.get("text", "") for b in blocks or ()
            if isinstance(b, Mapping) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
    )


def _image_part(block: Mapping[str, Any]) -> dict[str, Any]:
    source = mapping(block.get("source"))
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    else:
        url = source.get("url") or source.get("file_id") or ""
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _text_blocks(content)
    return json.dumps(content, ensure_ascii=False)


def anthropic_messages(messages: Any, system: Any = None) -> list[dict[str, Any]]:
    """``system`` + ``messages`` as Wilson's messages."""
    result: list[dict[str, Any]] = []
    system_text = _text_blocks(system) if system else ""
    if system_text:
        result.append({"role": "system", "content": system_text})
    if not isinstance(messages, list):
        raise ProtocolError("messages request without a 'messages' list")
    names: dict[str, str] = {}
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise ProtocolError(f"message {index} must be an object with a 'role'")
        role, content = message["role"], message.get("content")
        if isinstance(content, str) or content is None:
            result.append({"role": role, "content": content or ""})
            continue
        if not isinstance(content, list):
            raise ProtocolError(f"message {index}: content must be a string or a list of blocks")
        if role == "assistant":
            text = _text_blocks(content)
            calls = []
            for block in content:
                if isinstance(block, Mapping) and block.get("type") == "tool_use":
                    call_id = str(block.get("id") or f"toolu_{new_id()[:12]}")
                    name = block.get("name") or "?"
                    names[call_id] = name
                    arguments, raw = parse_arguments(block.get("input"))
                    calls.append(tool_entry(call_id, name, arguments, raw))
            out: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
            if calls:
                out["tool_calls"] = calls
            result.append(out)
            continue
        parts: list[dict[str, Any]] = []
        for block in content:
            if not isinstance(block, Mapping):
                continue
            kind = block.get("type")
            if kind == "tool_result":
                call_id = str(block.get("tool_use_id") or "")
                tool: dict[str, Any] = {"role": "tool", "tool_call_id": call_id}
                if call_id in names:
                    tool["name"] = names[call_id]
                tool["content"] = _tool_result_text(block.get("content"))
                if block.get("is_error"):
                    tool["is_error"] = True
                result.append(tool)
            elif kind == "text" and isinstance(block.get("text"), str):
                parts.append({"type": "text", "text": block["text"]})
            elif kind == "image":
                parts.append(_image_part(block))
        if parts:
            if all(p["type"] == "text" for p in parts):
                result.append({"role": role, "content": "".join(p["text"] for p in parts)})
            else:
                result.append({"role": role, "content": parts})
    return result


def tools_of(tools: Any) -> list[dict[str, Any]]:
    result = []
    for tool in tools or ():
        if not isinstance(tool, Mapping):
            continue
        if "input_schema" in tool or tool.get("type") in (None, "custom"):
            result.append(function_tool(tool.get("name"), tool.get("description"), tool.get("input_schema")))
        else:  # server tools (web search, code execution, ...) as they were sent
            result.append(dict(tool))
    return result


def parse_request(body: Any) -> Request:
    data = as_object(body, "messages request")
    return request_of(
        data, anthropic_messages(data.get("messages"), data.get("system")), tools_of(data.get("tools")), _NOT_PARAMS
    )


def _input_tokens(usage: Mapping[str, Any]) -> int | None:
    """All prompt tokens, cached ones included (what OpenAI's ``prompt_tokens`` counts)."""
    values = [integer(usage.get(k)) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    if values[0] is None:
        return None
    return sum(v for v in values if v is not None)


def _tool_call(block: Mapping[str, Any], raw_json: str | None = None) -> ToolCall:
    return tool_call(block.get("id"), block.get("name"), raw_json or block.get("input"), prefix="toolu")


def _tokens(usage: Mapping[str, Any]) -> dict[str, int | None]:
    return {"input_tokens": _input_tokens(usage), "output_tokens": integer(usage.get("output_tokens"))}


def parse_response(body: Any, request: Request | None = None) -> Result:
    data = as_object(body, "messages response")
    if data.get("type") == "error" or data.get("error"):
        return Result(status=STATUS_ERROR, error=error_message(data) or "error")
    blocks = [b for b in data.get("content") or () if isinstance(b, Mapping)]
    texts = [b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]
    calls = [_tool_call(b) for b in blocks if b.get("type") == "tool_use"]
    return answer(
        joined(texts),
        calls,
        **_tokens(mapping(data.get("usage"))),
        model=string(data.get("model")),
        finish_reason=data.get("stop_reason"),
    )


class Assembler(_Assembler):
    """Events of one streamed message, assembled."""

    framing = "sse"

    def __init__(self, request: Request | None = None) -> None:
        super().__init__()
        self._blocks: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] = {}
        self._model: str | None = None
        self._stop: str | None = None

    def feed(self, data: Mapping[str, Any], event: str | None = None) -> bool:
        kind = data.get("type") or event
        if kind == "error":
            self.error = error_message(data) or "error event in the stream"
            return False
        if kind == "message_start":
            message = mapping(data.get("message"))
            self._model = message.get("model") or self._model
            if isinstance(message.get("usage"), Mapping):
                self._usage.update({k: v for k, v in message["usage"].items() if v is not None})
            return False
        if kind == "content_block_start":
            block = mapping(data.get("content_block"))
            index = data.get("index") if isinstance(data.get("index"), int) else len(self._blocks)
            self._blocks[index] = {"block": dict(block), "text": [block.get("text") or ""], "json": []}
            return block.get("type") == "tool_use" or bool(block.get("text"))
        if kind == "content_block_delta":
            delta = mapping(data.get("delta"))
            index = data.get("index") if isinstance(data.get("index"), int) else max(self._blocks, default=0)
            entry = self._blocks.setdefault(index, {"block": {"type": "text"}, "text": [], "json": []})
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                entry["text"].append(delta["text"])
                return bool(delta["text"])
            if delta.get("type") == "input_json_delta" and isinstance(delta.get("partial_json"), str):
                entry["json"].append(delta["partial_json"])
                return True
            return False
        if kind == "message_delta":
            delta = mapping(data.get("delta"))
            self._stop = delta.get("stop_reason") or self._stop
            if isinstance(data.get("usage"), Mapping):
                self._usage.update({k: v for k, v in data["usage"].items() if v is not None})
            return False
        if kind == "message_stop":
            self.finished = True
        return False

    def result(self, interrupted: str | None = None) -> Result:
        texts, calls = [], []
        for index in sorted(self._blocks):
            entry = self._blocks[index]
            block = entry["block"]
            if block.get("type") == "text":
                texts.append("".join(entry["text"]))
            elif block.get("type") == "tool_use":
                calls.append(_tool_call(block, "".join(entry["json"]) or None))
        return self.assembled(
            joined(texts),
            calls,
            interrupted=interrupted,
            **_tokens(self._usage),
            model=self._model,
            finish_reason=self._stop,
        )

