"""Ollama's native chat (``POST /api/chat``), streamed (the default) or not.

Messages are chat-shaped already, but Ollama's tool calls carry no id (newer
versions may) and its tool results name the tool (``tool_name``) instead of
the call.  So that results link to calls as they do for OpenAI traffic, a
call without an id gets one derived from the conversation before it, its
name, arguments and position (the same id when the model's answer is
captured and when the app sends it back), and each ``role: "tool"`` message
answers the first unanswered call of the last assistant turn with its
``tool_name`` (else the next one).  A stream is NDJSON: objects with
``message`` deltas (``content`` pieces, whole ``tool_calls``), the last with
``done: true`` and the token counts (``prompt_eval_count``, ``eval_count``);
``{"error": "..."}`` may come instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from wilson_core.messages import parse_arguments
from wilson_core.records import STATUS_ERROR, ToolCall

from .common import Assembler as _Assembler
from .common import (
    ProtocolError,
    Request,
    Result,
    answer,
    as_object,
    error_message,
    http_error_text,
    integer,
    joined,
    mapping,
    request_of,
    string,
    tool_entry,
)

NAME = "ollama"
PATH = "/api/chat"
_NOT_PARAMS = {"model", "messages", "tools", "stream"}

#: a readable error from an HTTP error body.
error_text = http_error_text


def _key(message: Mapping[str, Any]) -> list[Any]:
    calls = [
        [c["function"]["name"], c["function"].get("arguments")] for c in message.get("tool_calls") or ()
    ]
    return [message.get("role"), message.get("content"), calls, message.get("name")]


def derived_call_id(context: Sequence[Mapping[str, Any]], name: str, arguments: Any, position: int) -> str:
    """The id of an Ollama tool call that came without one (stable across requests)."""
    digest = hashlib.sha256(
        json.dumps([[_key(m) for m in context], name, arguments, position], sort_keys=True, default=str).encode()
    ).hexdigest()
    return f"call_{digest[:24]}"


def _calls(raw: Any, context: Sequence[Mapping[str, Any]], offset: int = 0) -> list[ToolCall]:
    calls = []
    for position, call in enumerate(raw or (), start=offset):
        if not isinstance(call, Mapping):
            continue
        function = mapping(call.get("function"))
        name = function.get("name") or "?"
        arguments, raw_text = parse_arguments(function.get("arguments"))
        call_id = call.get("id") or derived_call_id(context, name, arguments if raw_text is None else raw_text, position)
        calls.append(ToolCall(id=str(call_id), name=name, arguments=arguments, raw_arguments=raw_text))
    return calls


def ollama_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise ProtocolError("/api/chat request without a 'messages' list")
    result: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of the last assistant turn's unanswered calls
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise ProtocolError(f"message {index} must be an object with a 'role'")
        role = message["role"]
        out: dict[str, Any] = {"role": role, "content": message.get("content") or ""}
        if message.get("images"):
            out["images"] = list(message["images"])
        if role == "assistant" and message.get("tool_calls"):
            calls = _calls(message["tool_calls"], result)
            out["tool_calls"] = [tool_entry(c.id, c.name, c.arguments, c.raw_arguments) for c in calls]
            if not out["content"]:
                out["content"] = None
            pending = [(c.id, c.name) for c in calls]
        elif role == "tool":
            name = message.get("tool_name") or message.get("name")
            call_id = message.get("tool_call_id")
            if not call_id and pending:
                match = next((p for p in pending if p[1] == name), pending[0])
                pending.remove(match)
                call_id, name = match[0], name or match[1]
            if call_id:
                out["tool_call_id"] = str(call_id)
            if name:
                out["name"] = name
        result.append(out)
    return result


def parse_request(body: Any) -> Request:
    data = as_object(body, "/api/chat request")
    return request_of(
        data,
        ollama_messages(data.get("messages")),
        [dict(t) for t in data.get("tools") or () if isinstance(t, Mapping)],
        _NOT_PARAMS,
        stream=data.get("stream", True) is not False,  # Ollama streams unless told not to
    )


def _tokens(data: Mapping[str, Any]) -> dict[str, int | None]:
    return {"input_tokens": integer(data.get("prompt_eval_count")), "output_tokens": integer(data.get("eval_count"))}


def _context(request: Request | None) -> Sequence[Mapping[str, Any]]:
    return request.messages if request is not None else ()


def parse_response(body: Any, request: Request | None = None) -> Result:
    data = as_object(body, "/api/chat response")
    if data.get("error"):
        return Result(status=STATUS_ERROR, error=error_message(data))
    message = mapping(data.get("message"))
    return answer(
        string(message.get("content")) or None,
        _calls(message.get("tool_calls"), _context(request)),
        **_tokens(data),
        model=string(data.get("model")),
        finish_reason=data.get("done_reason"),
    )


class Assembler(_Assembler):
    """NDJSON lines of one streamed chat, assembled."""

    framing = "ndjson"

    def __init__(self, request: Request | None = None) -> None:
        super().__init__()
        self._context = _context(request)
        self._text: list[str] = []
        self._calls: list[ToolCall] = []
        self._final: Mapping[str, Any] = {}
        self._model: str | None = None

    def feed(self, data: Mapping[str, Any], event: str | None = None) -> bool:
        if data.get("error"):
            self.error = error_message(data) or "error in the stream"
            return False
        self._model = data.get("model") or self._model
        message = mapping(data.get("message"))
        output = False
        if isinstance(message.get("content"), str) and message["content"]:
            self._text.append(message["content"])
            output = True
        if message.get("tool_calls"):
            self._calls.extend(_calls(message["tool_calls"], self._context, len(self._calls)))
            output = True
        if data.get("done"):
            self._final = data
            self.finished = True
        return output

    def result(self, interrupted: str | None = None) -> Result:
        self.end()
        return self.assembled(
            joined(self._text),
            self._calls,
            interrupted=interrupted,
            **_tokens(self._final),
            model=self._model,
            finish_reason=self._final.get("done_reason"),
        )
