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
from wilson_core.messages import normalize_messages
from wilson_core.records import STATUS_ERROR, ToolCall

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
    text_of,
    tool_call,
)

NAME = "openai-chat"
PATH = "/chat/completions"
#: request keys that are not parameters of the call.
_NOT_PARAMS = {"model", "messages", "tools", "functions", "stream", "stream_options"}

#: a readable error from an HTTP error body.
error_text = http_error_text


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
    return request_of(data, normalize_chat_messages(messages), tools_of(data), _NOT_PARAMS)


def _tool_call(data: Any) -> ToolCall | None:
    if not isinstance(data, Mapping):
        return None
    function = mapping(data.get("function"))
    return tool_call(data.get("id"), string(function.get("name")), function.get("arguments"))


def _tokens(usage: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "input_tokens": integer(usage.get("prompt_tokens")),
        "output_tokens": integer(usage.get("completion_tokens")),
        "total_tokens": usage.get("total_tokens"),
    }


def parse_response(body: Any, request: Request | None = None) -> Result:
    data = as_object(body, "chat completions response")
    if data.get("error"):
        return Result(status=STATUS_ERROR, error=error_message(data), model=data.get("model"))
    choices = data.get("choices") if isinstance(data.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], Mapping) else {}
    message = mapping(choice.get("message"))
    calls = [_tool_call(c) for c in message.get("tool_calls") or ()]
    return answer(
        text_of(message.get("content")),
        [c for c in calls if c is not None],
        **_tokens(mapping(data.get("usage"))),
        model=string(data.get("model")),
        finish_reason=choice.get("finish_reason"),
    )


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
            delta = mapping(choice.get("delta"))
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
        function = mapping(fragment.get("function"))
        if isinstance(function.get("name"), str) and function["name"] and not entry["name"]:
            entry["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            entry["arguments"].append(function["arguments"])

    def result(self, interrupted: str | None = None) -> Result:
        self.end()
        calls = [
            tool_call(entry["id"], entry["name"], "".join(entry["arguments"]))
            for entry in (self._calls[index] for index in sorted(self._calls))
        ]
        return self.assembled(
            joined(self._text),
            calls,
            interrupted=interrupted,
            finished=self.finished or self._finish is not None,
            **_tokens(self._usage),
            model=self._model,
            finish_reason=self._finish,
        )
