"""OpenAI Responses API (``POST /v1/responses``), streamed or not.

Request ``input`` is a string (one user message) or a list of items: messages
(``role`` + text or ``input_text``/``output_text`` parts), ``function_call``
items (a tool call of the model, joined into the assistant message before
them) and ``function_call_output`` items (a tool result, stored as a
``role: "tool"`` message).  ``instructions`` is the system message.  Function
tools are flat (``{"type": "function", "name", "parameters"}``) and are stored
in the chat-completions shape.  A stream is SSE with typed events
(``response.output_text.delta``, ``response.function_call_arguments.delta``,
``response.output_item.done``, ``response.completed`` / ``failed`` /
``incomplete``, ``error``); the final ``response`` object wins over deltas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wilson_core.messages import parse_arguments
from wilson_core.records import STATUS_ERROR, STATUS_OK, ToolCall, new_id

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
    status_of,
    string,
    text_of,
    tool_call,
    tool_entry,
)

NAME = "openai-responses"
PATH = "/responses"
_NOT_PARAMS = {"model", "input", "instructions", "tools", "stream", "stream_options"}
_TEXT = ("input_text", "output_text", "text")

#: a readable error from an HTTP error body.
error_text = http_error_text


def _message_content(content: Any) -> Any:
    if isinstance(content, str) or content is None:
        return content if content is not None else ""
    if isinstance(content, list):
        if all(isinstance(p, Mapping) and p.get("type") in _TEXT for p in content):
            return text_of(content, _TEXT) or ""
        parts = []
        for part in content:
            if not isinstance(part, Mapping):
                continue
            if part.get("type") in _TEXT:
                parts.append({"type": "text", "text": part.get("text", "")})
            elif part.get("type") == "input_image":
                parts.append({"type": "image_url", "image_url": {"url": part.get("image_url") or part.get("file_id")}})
            else:
                parts.append(dict(part))
        return parts
    return str(content)


def input_messages(items: Any, instructions: Any = None) -> list[dict[str, Any]]:
    """``instructions`` + ``input`` as Wilson's messages."""
    messages: list[dict[str, Any]] = []
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
        return messages
    if not isinstance(items, list):
        raise ProtocolError("responses request 'input' must be a string or a list of items")
    names: dict[str, str] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ProtocolError(f"responses input item {index} must be an object")
        kind = item.get("type")
        if kind == "function_call":
            call_id = str(item.get("call_id") or item.get("id") or f"call_{new_id()[:12]}")
            name = item.get("name") or "?"
            arguments, raw = parse_arguments(item.get("arguments"))
            names[call_id] = name
            last = messages[-1] if messages else None
            if last is None or last.get("role") != "assistant":
                last = {"role": "assistant", "content": None}
                messages.append(last)
            last.setdefault("tool_calls", []).append(tool_entry(call_id, name, arguments, raw))
        elif kind == "function_call_output":
            call_id = str(item.get("call_id") or "")
            output = item.get("output")
            message = {"role": "tool", "tool_call_id": call_id, "content": _tool_output(output)}
            if call_id in names:
                message["name"] = names[call_id]
            messages.append(message)
        elif "role" in item and kind in (None, "message"):
            role = "system" if item["role"] == "developer" else str(item["role"])
            content = _message_content(item.get("content"))
            if role == "assistant" and messages and messages[-1].get("role") == "assistant" and messages[-1]["content"] is None and not messages[-1].get("tool_calls"):
                messages[-1]["content"] = content
            else:
                messages.append({"role": role, "content": content})
        # reasoning items, item references and built-in tool calls carry nothing to train on
    return messages


def _tool_output(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return text_of(output, _TEXT) or ""
    import json

    return json.dumps(output, ensure_ascii=False)


def tools_of(tools: Any) -> list[dict[str, Any]]:
    result = []
    for tool in tools or ():
        if not isinstance(tool, Mapping):
            continue
        if tool.get("type") == "function" and "function" not in tool:
            result.append(function_tool(tool.get("name"), tool.get("description"), tool.get("parameters")))
        else:
            result.append(dict(tool))
    return result


def parse_request(body: Any) -> Request:
    data = as_object(body, "responses request")
    if "input" not in data:
        raise ProtocolError("responses request without 'input'")
    return request_of(
        data, input_messages(data.get("input"), data.get("instructions")), tools_of(data.get("tools")), _NOT_PARAMS
    )


def _call_of(item: Mapping[str, Any]) -> ToolCall:
    return tool_call(item.get("call_id") or item.get("id"), item.get("name"), item.get("arguments"))


def _output_text(item: Mapping[str, Any]) -> str:
    return "".join(
        p.get("text", "") for p in item.get("content") or ()
        if isinstance(p, Mapping) and p.get("type") == "output_text" and isinstance(p.get("text"), str)
    )


def _from_response(data: Mapping[str, Any]) -> Result:
    texts, calls = [], []
    for item in data.get("output") or ():
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "message":
            texts.append(_output_text(item))
        elif item.get("type") == "function_call":
            calls.append(_call_of(item))
    usage = mapping(data.get("usage"))
    details = mapping(data.get("incomplete_details"))
    failed = data.get("status") == "failed" or data.get("error")
    return answer(
        joined(texts),
        calls,
        input_tokens=integer(usage.get("input_tokens")),
        output_tokens=integer(usage.get("output_tokens")),
        total_tokens=usage.get("total_tokens"),
        model=string(data.get("model")),
        finish_reason=details.get("reason") or data.get("status"),
        status=STATUS_ERROR if failed else STATUS_OK,
        error=(error_message(data) or "response failed") if failed else None,
    )


def parse_response(body: Any, request: Request | None = None) -> Result:
    return _from_response(as_object(body, "responses response"))


class Assembler(_Assembler):
    """Events of one streamed response, assembled."""

    framing = "sse"

    def __init__(self, request: Request | None = None) -> None:
        super().__init__()
        self._items: dict[int, dict[str, Any]] = {}
        self._final: Result | None = None
        self._model: str | None = None

    def _item(self, index: Any) -> dict[str, Any]:
        key = index if isinstance(index, int) else len(self._items)
        return self._items.setdefault(key, {"type": None, "text": [], "arguments": [], "item": None})

    def feed(self, data: Mapping[str, Any], event: str | None = None) -> bool:
        kind = data.get("type") or event
        if kind == "error":
            self.error = error_message({"error": data}) or error_message(data) or "error event in the stream"
            return False
        if kind in ("response.created", "response.in_progress") and isinstance(data.get("response"), Mapping):
            self._model = data["response"].get("model") or self._model
            return False
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            response = mapping(data.get("response"))
            self._final = _from_response(response)
            self.finished = True
            if kind == "response.failed":
                self.error = self._final.error or "response failed"
            return False
        if kind == "response.output_item.added" or kind == "response.output_item.done":
            item = mapping(data.get("item"))
            entry = self._item(data.get("output_index"))
            entry["type"] = item.get("type")
            if kind.endswith(".done"):
                entry["item"] = item
            elif item.get("type") == "function_call":
                entry["item_start"] = item
                return True
            return False
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            self._item(data.get("output_index"))["text"].append(data["delta"])
            return bool(data["delta"])
        if kind == "response.function_call_arguments.delta" and isinstance(data.get("delta"), str):
            self._item(data.get("output_index"))["arguments"].append(data["delta"])
            return True
        return False

    def result(self, interrupted: str | None = None) -> Result:
        status, error = status_of(self.error, self.finished, interrupted)
        if self._final is not None:
            from attrs import evolve

            return evolve(self._final, status=status, error=error, model=self._final.model or self._model)
        texts, calls = [], []
        for index in sorted(self._items):
            entry = self._items[index]
            item = entry["item"]
            if entry["type"] == "message":
                texts.append(_output_text(item) if item else "".join(entry["text"]))
            elif entry["type"] == "function_call":
                if item is None:
                    item = dict(entry.get("item_start") or {}, arguments="".join(entry["arguments"]))
                calls.append(_call_of(item))
        return answer(joined(texts), calls, model=self._model, status=status, error=error)
