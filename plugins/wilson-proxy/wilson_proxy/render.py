"""Answers of a local model written in the protocol the client speaks.

A local route and ``wilson serve`` run a Wilson provider, which yields
:mod:`wilson_core.streams` events (text deltas, tool-call deltas, usage).  A
renderer turns them into what the client's SDK expects: OpenAI chat
completions (JSON, or SSE chunks ending with ``[DONE]``), OpenAI responses
(a ``response`` object, or its typed SSE events), Anthropic messages
(JSON, or the ``message_start`` ... ``message_stop`` event sequence) and
Ollama's ``/api/chat`` (JSON, or NDJSON lines).  The rendered bytes are also
what is recorded, through the same converters as upstream answers.
"""

from __future__ import annotations

import json
import time
from typing import Any

from wilson_core.records import new_id
from wilson_core.streams import StreamInfo, TextDelta, ToolCallDelta

from .http import response_head


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def chunk(data: bytes) -> bytes:
    """One piece of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    body = data.encode() if isinstance(data, str) else _dumps(data)
    return head + b"data: " + body + b"\n\n"


class Renderer:
    """Collects the answer; subclasses write it in one protocol.

    ``head()`` is the HTTP head (chunked when streaming), ``event(e)`` the bytes
    for one provider event (streaming only), ``end(error)`` the rest: for a
    non-streamed answer the whole body.
    """

    #: the protocol whose error shape the client reads (:func:`.captured.error_body`)
    protocol = "openai"
    content_type = "application/json"
    stream_type = "text/event-stream"

    def __init__(self, model: str, stream: bool, request: dict[str, Any]) -> None:
        self.model = model
        self.stream = stream
        self.request = request
        self.text = ""
        self.calls: list[dict[str, Any]] = []
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.finish_reason: str | None = None
        self.id = new_id()[:24]
        self.created = int(time.time())
        self.output = False

    # -- what came
    def take(self, event: Any) -> None:
        if isinstance(event, TextDelta):
            self.text += event.text
            self.output = True
        elif isinstance(event, ToolCallDelta):
            while len(self.calls) <= event.index:
                self.calls.append({"id": None, "name": "", "arguments": ""})
            call = self.calls[event.index]
            if event.id:
                call["id"] = event.id
            if event.name:
                call["name"] += event.name
            call["arguments"] += event.arguments
            self.output = True
        elif isinstance(event, StreamInfo):
            if event.input_tokens is not None:
                self.input_tokens = event.input_tokens
            if event.output_tokens is not None:
                self.output_tokens = event.output_tokens
            if event.finish_reason:
                self.finish_reason = event.finish_reason

    def call_id(self, index: int) -> str:
        call = self.calls[index]
        if not call["id"]:
            call["id"] = f"call_{self.id[-12:]}_{index}"
        return call["id"]

    def arguments(self, index: int) -> Any:
        try:
            return json.loads(self.calls[index]["arguments"] or "{}")
        except json.JSONDecodeError:
            return {}

    # -- HTTP
    def head(self, status: int = 200) -> bytes:
        if self.stream and status == 200:
            return response_head(200, [("content-type", self.stream_type), ("cache-control", "no-cache"),
                                       ("transfer-encoding", "chunked")], None)
        return b""  # a non-streamed answer is written whole by ``end``

    def event(self, event: Any) -> bytes:
        """The stream's bytes for one provider event (not chunk-framed); nothing when not streaming."""
        self.take(event)
        return self.stream_piece(event) if self.stream else b""

    def end(self, error: str | None = None) -> tuple[int, bytes]:
        """The end of the answer: (status, the last stream bytes or the whole non-streamed body)."""
        if self.stream:
            return 200, self.stream_end(error)
        if error is not None:
            return 500, self.error_body(error)
        return 200, _dumps(self.body())

    def whole(self, status: int, body: bytes, keep_alive: bool = True) -> bytes:
        """A non-streamed response: head and body."""
        headers = [("content-type", self.content_type)] + ([] if keep_alive else [("connection", "close")])
        return response_head(status, headers, len(body)) + body

    # -- per protocol
    def stream_piece(self, event: Any) -> bytes:
        raise NotImplementedError

    def stream_end(self, error: str | None) -> bytes:
        raise NotImplementedError

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(self, message: str) -> bytes:
        return _dumps({"error": {"message": message, "type": "server_error", "param": None, "code": "local_model"}})

    @property
    def stop_reason(self) -> str:
        if self.calls:
            return "tool_calls"
        return "length" if self.finish_reason == "length" else "stop"


class OpenAIChat(Renderer):
    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        data = {"id": f"chatcmpl-{self.id}", "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if self._usage_wanted:
            data["usage"] = None
        return data

    @property
    def _usage_wanted(self) -> bool:
        options = self.request.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))

    def stream_piece(self, event: Any) -> bytes:
        out = b""
        if not getattr(self, "_started", False):
            self._started = True
            out += _sse(self._chunk({"role": "assistant", "content": ""}))
        if isinstance(event, TextDelta) and event.text:
            out += _sse(self._chunk({"content": event.text}))
        elif isinstance(event, ToolCallDelta):
            fragment: dict[str, Any] = {"index": event.index, "function": {"arguments": event.arguments}}
            if event.name or event.id:
                fragment.update(id=self.call_id(event.index), type="function")
                fragment["function"]["name"] = self.calls[event.index]["name"]
            out += _sse(self._chunk({"tool_calls": [fragment]}))
        return out

    def stream_end(self, error: str | None) -> bytes:
        out = self.stream_piece(None) if not getattr(self, "_started", False) else b""
        if error is not None:
            return out + _sse({"error": {"message": error, "type": "server_error", "param": None, "code": None}})
        out += _sse(self._chunk({}, self.stop_reason))
        if self._usage_wanted:
            out += _sse({"id": f"chatcmpl-{self.id}", "object": "chat.completion.chunk", "created": self.created,
                         "model": self.model, "choices": [], "usage": self.usage()})
        return out + _sse("[DONE]")

    def usage(self) -> dict[str, Any]:
        prompt, completion = self.input_tokens or 0, self.output_tokens or 0
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def body(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text or (None if self.calls else "")}
        if self.calls:
            message["tool_calls"] = [
                {"id": self.call_id(i), "type": "function",
                 "function": {"name": call["name"], "arguments": call["arguments"] or "{}"}}
                for i, call in enumerate(self.calls)
            ]
        return {"id": f"chatcmpl-{self.id}", "object": "chat.completion", "created": self.created,
                "model": self.model, "choices": [{"index": 0, "message": message, "finish_reason": self.stop_reason}],
                "usage": self.usage()}


class AnthropicMessages(Renderer):
    protocol = "anthropic"

    def error_body(self, message: str) -> bytes:
        return _dumps({"type": "error", "error": {"type": "api_error", "message": message}})

    @property
    def stop_reason(self) -> str:
        if self.calls:
            return "tool_use"
        return "max_tokens" if self.finish_reason == "length" else "end_turn"

    def _start(self) -> bytes:
        if getattr(self, "_started", False):
            return b""
        self._started = True
        self._block = -1
        self._open: str | None = None
        message = {"id": f"msg_{self.id}", "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": self.input_tokens or 0, "output_tokens": 0}}
        return _sse({"type": "message_start", "message": message}, "message_start")

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _sse({"type": "content_block_stop", "index": self._block}, "content_block_stop")

    def stream_piece(self, event: Any) -> bytes:
        out = self._start()
        if isinstance(event, TextDelta) and event.text:
            if self._open != "text":
                out += self._close_block()
                self._block += 1
                self._open = "text"
                out += _sse({"type": "content_block_start", "index": self._block,
                             "content_block": {"type": "text", "text": ""}}, "content_block_start")
            out += _sse({"type": "content_block_delta", "index": self._block,
                         "delta": {"type": "text_delta", "text": event.text}}, "content_block_delta")
        elif isinstance(event, ToolCallDelta):
            key = f"tool{event.index}"
            if self._open != key:
                out += self._close_block()
                self._block += 1
                self._open = key
                out += _sse({"type": "content_block_start", "index": self._block,
                             "content_block": {"type": "tool_use", "id": self.call_id(event.index),
                                               "name": self.calls[event.index]["name"], "input": {}}},
                            "content_block_start")
            if event.arguments:
                out += _sse({"type": "content_block_delta", "index": self._block,
                             "delta": {"type": "input_json_delta", "partial_json": event.arguments}},
                            "content_block_delta")
        return out

    def call_id(self, index: int) -> str:
        call = self.calls[index]
        if not call["id"] or not str(call["id"]).startswith("toolu_"):
            call["id"] = f"toolu_{self.id[-12:]}{index}"
        return call["id"]

    def stream_end(self, error: str | None) -> bytes:
        out = self._start()
        if error is not None:
            return out + _sse({"type": "error", "error": {"type": "api_error", "message": error}}, "error")
        out += self._close_block()
        out += _sse({"type": "message_delta", "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                     "usage": {"output_tokens": self.output_tokens or 0}}, "message_delta")
        return out + _sse({"type": "message_stop"}, "message_stop")

    def body(self) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if self.text:
            content.append({"type": "text", "text": self.text})
        for i, call in enumerate(self.calls):
            content.append({"type": "tool_use", "id": self.call_id(i), "name": call["name"],
                            "input": self.arguments(i)})
        return {"id": f"msg_{self.id}", "type": "message", "role": "assistant", "model": self.model,
                "content": content, "stop_reason": self.stop_reason, "stop_sequence": None,
                "usage": {"input_tokens": self.input_tokens or 0, "output_tokens": self.output_tokens or 0}}


class OllamaChat(Renderer):
    protocol = "ollama"
    stream_type = "application/x-ndjson"

    def error_body(self, message: str) -> bytes:
        return _dumps({"error": message})

    def _line(self, data: dict[str, Any]) -> bytes:
        return _dumps(data) + b"\n"

    def _now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def stream_piece(self, event: Any) -> bytes:
        if isinstance(event, TextDelta) and event.text:
            return self._line({"model": self.model, "created_at": self._now(),
                               "message": {"role": "assistant", "content": event.text}, "done": False})
        return b""  # Ollama sends tool calls whole, in the last message

    def _final_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        if self.calls:
            message["tool_calls"] = [{"function": {"name": c["name"], "arguments": self.arguments(i)}}
                                     for i, c in enumerate(self.calls)]
        return message

    def stream_end(self, error: str | None) -> bytes:
        if error is not None:
            return self._line({"error": error})
        return self._line({"model": self.model, "created_at": self._now(), "message": self._final_message(),
                           "done": True, "done_reason": "length" if self.finish_reason == "length" else "stop",
                           "prompt_eval_count": self.input_tokens or 0, "eval_count": self.output_tokens or 0})

    def body(self) -> dict[str, Any]:
        message = self._final_message()
        message["content"] = self.text
        return {"model": self.model, "created_at": self._now(), "message": message, "done": True,
                "done_reason": "length" if self.finish_reason == "length" else "stop",
                "prompt_eval_count": self.input_tokens or 0, "eval_count": self.output_tokens or 0}


class OpenAIResponses(Renderer):
    """The OpenAI Responses API (``POST /v1/responses``): a ``response`` object, or its typed SSE events
    (``response.created`` ... ``response.completed``), which the openai SDK's stream helpers rebuild."""

    def __init__(self, model: str, stream: bool, request: dict[str, Any]) -> None:
        super().__init__(model, stream, request)
        self._sequence = 0
        self._started = False
        self._items: list[dict[str, Any]] = []  # the output items streamed so far (the open one last)
        self._open: Any = None  # "text", or the index of the tool call whose item is open

    def _event(self, kind: str, **data: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return _sse(data, kind)

    @property
    def _incomplete(self) -> bool:
        return self.finish_reason == "length" and not self.calls

    def _message(self, text: str, status: str = "completed") -> dict[str, Any]:
        return {"type": "message", "id": f"msg_{self.id}", "status": status, "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []}

    def _call(self, index: int, status: str = "completed") -> dict[str, Any]:
        call = self.calls[index]
        return {"type": "function_call", "id": f"fc_{self.id[-12:]}_{index}", "call_id": self.call_id(index),
                "name": call["name"], "arguments": call["arguments"] if status == "completed" else "",
                "status": status}

    def response(self, status: str, output: list[dict[str, Any]], error: str | None = None) -> dict[str, Any]:
        request = self.request
        data: dict[str, Any] = {
            "id": f"resp_{self.id}", "object": "response", "created_at": self.created, "status": status,
            "model": self.model, "output": output, "error": None, "incomplete_details": None,
            "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
            "metadata": request.get("metadata") or {}, "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None}, "store": False,
            "temperature": request.get("temperature"), "top_p": request.get("top_p"),
            "text": request.get("text") or {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools") or [],
            "truncation": "disabled", "user": None, "usage": None,
        }
        if status in ("completed", "incomplete"):
            data["usage"] = self.usage()
        if status == "incomplete":
            data["incomplete_details"] = {"reason": "max_output_tokens"}
        if error is not None:
            data["error"] = {"code": "server_error", "message": error}
        return data

    def usage(self) -> dict[str, Any]:
        prompt, completion = self.input_tokens or 0, self.output_tokens or 0
        return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + completion}

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        pending = self.response("in_progress", [])
        return (self._event("response.created", response=pending)
                + self._event("response.in_progress", response=pending))

    def _close(self) -> bytes:
        opened, self._open = self._open, None
        if opened is None:
            return b""
        index = len(self._items) - 1
        if opened == "text":
            item = self._items[index] = self._message(self._items[index]["_text"])
            part = item["content"][0]
            return (self._event("response.output_text.done", item_id=item["id"], output_index=index,
                                content_index=0, text=part["text"], logprobs=[])
                    + self._event("response.content_part.done", item_id=item["id"], output_index=index,
                                  content_index=0, part=part)
                    + self._event("response.output_item.done", output_index=index, item=item))
        item = self._items[index] = self._call(opened)
        return (self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                            arguments=item["arguments"])
                + self._event("response.output_item.done", output_index=index, item=item))

    def stream_piece(self, event: Any) -> bytes:
        out = self._start()
        if isinstance(event, TextDelta) and event.text:
            if self._open != "text":
                out += self._close()
                self._open = "text"
                item = self._message("", "in_progress")
                self._items.append({**item, "_text": ""})
                index = len(self._items) - 1
                out += self._event("response.output_item.added", output_index=index, item=item)
                out += self._event("response.content_part.added", item_id=item["id"], output_index=index,
                                   content_index=0, part={"type": "output_text", "text": "", "annotations": []})
            index = len(self._items) - 1
            self._items[index]["_text"] += event.text
            out += self._event("response.output_text.delta", item_id=self._items[index]["id"], output_index=index,
                               content_index=0, delta=event.text, logprobs=[])
        elif isinstance(event, ToolCallDelta):
            if self._open != event.index:
                out += self._close()
                self._open = event.index
                item = self._call(event.index, "in_progress")
                self._items.append(item)
                out += self._event("response.output_item.added", output_index=len(self._items) - 1, item=item)
            if event.arguments:
                out += self._event("response.function_call_arguments.delta", item_id=self._items[-1]["id"],
                                   output_index=len(self._items) - 1, delta=event.arguments)
        return out

    def stream_end(self, error: str | None) -> bytes:
        out = self._start()
        if error is not None:
            return out + self._event("response.failed", response=self.response("failed", [], error))
        out += self._close()
        if self._incomplete:
            return out + self._event("response.incomplete", response=self.response("incomplete", self._items))
        return out + self._event("response.completed", response=self.response("completed", self._items))

    def body(self) -> dict[str, Any]:
        output = [self._message(self.text)] if self.text or not self.calls else []
        output += [self._call(index) for index in range(len(self.calls))]
        return self.response("incomplete" if self._incomplete else "completed", output)


#: (protocol, endpoint) -> renderer class; endpoints without one are never answered locally.
RENDERERS: dict[tuple[str, str], type[Renderer]] = {
    ("openai", "chat"): OpenAIChat,
    ("openai", "responses"): OpenAIResponses,
    ("anthropic", "messages"): AnthropicMessages,
    ("ollama", "chat"): OllamaChat,
}


def streamed(protocol: str, request: dict[str, Any]) -> bool:
    """Whether the client asked for a stream (Ollama streams unless told not to)."""
    value = request.get("stream")
    if protocol == "ollama":
        return value is not False
    return value is True
