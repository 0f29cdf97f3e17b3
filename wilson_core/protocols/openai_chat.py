"""OpenAI chat completions (``POST /v1/chat/completions``), streamed or not.

Request messages are already close to Wilson's shape: tool call arguments
(JSON text on the wire) become dicts, text-only content lists become strings,
and the ``developer`` role is stored as ``system`` (what chat templates know).
A stream is SSE: ``chat.completion.chunk`` objects whose ``delta`` carries
text and tool-call fragments (by ``index``; ``arguments`` cut anywhere), then
``[DONE]``; with ``stream_options.include_usage`` a last chunk with empty
``choices`` carries the usage.  An ``{"error": ...}`` object may come instead
of a chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wilson_core.errors import RecordError
from wilson_core.messages import normalize_messages, parse_arguments
from wilson_core.records import STATUS_ERROR, ToolCall, new_id

from .common import (
    Assembler as _Assembler,
)
from .common import (
    ProtocolError,
    Request,
    Result,
    as_object,
    error_message,
    function_tool,
    http_error_text,
    integer,
    status_of,
    text_of,
    total,
)

NAME = "openai-chat"
PATH = "/chat/completions"
#: request keys that are not parameters of the call.
_NOT_PARAMS = {"model", "messages", "tools", "functions", "stream", "stream_options"}


def _content(value: Any) -> Any:
    """Text-only content lists as one string; lists with images etc. are kept."""
    if isinstance(value, list) and all(
        isinstance(p, Mapping) and p.get("type") == "text" for p in value
    ):
        return text_of(value) or ""
    return value


def normalize_chat_messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI chat messages in Wilson's stored shape (also used for LiteLLM's)."""
    try:
        result = normalize_messages(messages)
    except RecordError as exc:
        raise ProtocolError(str(exc)) from None
    for message in result:
        if message.get("role") == "developer":
            message["role"] = "system"
        if "content" in message:
            message["content"] = _content(message["content"])
    return result


def tools_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    tools = [dict(t) for t in body.get("tools") or () if isinstance(t, Mapping)]
    for function in body.get("functions") or ():  # the legacy ``functions`` parameter
        if isinstance(function, Mapping):
            tools.append(function_tool(function.get("name"), function.get("description"), function.get("parameters")))
    return tools


def parse_request(body: Any) -> Request:
    data = as_object(body, "chat completions request")
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise ProtocolError("chat completions request without a 'messages' list")
    return Request(
        messages=normalize_chat_messages(messages),
        tools=tools_of(data),
        params={k: v for k, v in data.items() if k not in _NOT_PARAMS},
        model=data.get("model") if isinstance(data.get("model"), str) else None,
        stream=bool(data.get("stream")),
    )


def _tool_call(data: Any) -> ToolCall | None:
    if not isinstance(data, Mapping):
        return None
    function = data.get("function") if isinstance(data.get("function"), Mapping) else {}
    name = function.get("name")
    arguments, raw = parse_arguments(function.get("arguments"))
    return ToolCall(
        id=str(data.get("id") or f"call_{new_id()[:12]}"),
        name=name if isinstance(name, str) and name else "?",
        arguments=arguments,
        raw_arguments=raw,
    )


def parse_response(body: Any, request: Request | None = None) -> Result:
    data = as_object(body, "chat completions response")
    if data.get("error"):
        return Result(status=STATUS_ERROR, error=error_message(data), model=data.get("model"))
    usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
    choices = data.get("choices") if isinstance(data.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], Mapping) else {}
    message = choice.get("message") if isinstance(choice.get("message"), Mapping) else {}
    calls = [_tool_call(c) for c in message.get("tool_calls") or ()]
    input_tokens, output_tokens = integer(usage.get("prompt_tokens")), integer(usage.get("completion_tokens"))
    return Result(
        content=text_of(message.get("content")),
        tool_calls=[c for c in calls if c is not None],
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total(input_tokens, output_tokens, usage.get("total_tokens")),
        model=data.get("model") if isinstance(data.get("model"), str) else None,
        finish_reason=choice.get("finish_reason"),
    )


def error_text(status: int, body: Any) -> str:
    return http_error_text(status, body)


class Assembler(_Assembler):
    """Chunks of one streamed chat completion, assembled (choice 0)."""

    framing = "sse"

    def __init__(self, request: Request | None = None) -> None:
        super().__init__()
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._ids: dict[str, int] = {}
        self._usage: Mapping[str, Any] = {}
        self._model: str | None = None
        self._finish: str | None = None

    def feed(self, data: Mapping[str, Any], event: str | None = None) -> bool:
        if data.get("error"):
            self.error = error_message(data) or "error event in the stream"
            return False
        if isinstance(data.get("model"), str) and data["model"]:
            self._model = data["model"]
        if isinstance(data.get("usage"), Mapping):
            self._usage = data["usage"]
        output = False
        for choice in data.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) not in (0, None):
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), Mapping) else {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text.append(content)
                output = True
            for fragment in delta.get("tool_calls") or ():
                if isinstance(fragment, Mapping):
                    self._tool_fragment(fragment)
                    output = True
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return output

    def _tool_fragment(self, fragment: Mapping[str, Any]) -> None:
        index = fragment.get("index")
        call_id = fragment.get("id")
        if not isinstance(index, int):  # servers that send whole calls without an index
            index = self._ids.get(call_id, len(self._calls)) if call_id else max(self._calls, default=0)
        entry = self._calls.setdefault(index, {"id": None, "name": "", "arguments": []})
        if isinstance(call_id, str) and call_id and not entry["id"]:
            entry["id"] = call_id
            self._ids[call_id] = index
        function = fragment.get("function") if isinstance(fragment.get("function"), Mapping) else {}
        if isinstance(function.get("name"), str) and function["name"] and not entry["name"]:
            entry["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            entry["arguments"].append(function["arguments"])

    def result(self, interrupted: str | None = None) -> Result:
        self.end()
        calls = []
        for index in sorted(self._calls):
            entry = self._calls[index]
            arguments, raw = parse_arguments("".join(entry["arguments"]))
            calls.append(
                ToolCall(
                    id=entry["id"] or f"call_{new_id()[:12]}",
                    name=entry["name"] or "?",
                    arguments=arguments,
                    raw_arguments=raw,
                )
            )
        finished = self.finished or self._finish is not None
        status, error = status_of(self.error, finished, interrupted)
        usage = self._usage
        input_tokens, output_tokens = integer(usage.get("prompt_tokens")), integer(usage.get("completion_tokens"))
        return Result(
            content="".join(self._text) if self._text else None,
            tool_calls=calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=total(input_tokens, output_tokens, usage.get("total_tokens")),
            model=self._model,
            finish_reason=self._finish,
            status=status,
            error=error,
        )
