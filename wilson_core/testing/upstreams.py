"""Local LLM servers that speak each wire protocol, with scripted replies.

Real HTTP servers (threaded, on 127.0.0.1, a free port) for tests and
benchmarks of the SDK wrappers and the recording proxy.  One server answers
all four protocols, by path:

    POST .../chat/completions   OpenAI chat completions (SSE when "stream": true)
    POST .../responses          OpenAI Responses API
    POST .../v1/messages        Anthropic messages
    POST /api/chat              Ollama (NDJSON unless "stream": false)
    GET  .../models, /api/tags  a model list

    with FakeUpstream() as upstream:
        upstream.push(Scripted(text="Hi"), Scripted(tool_calls=[("lookup", {"q": 1})]))
        client = openai.OpenAI(base_url=upstream.openai_url, api_key="test")
        ...
        upstream.requests[0].json        # what the server received

Each request takes the next queued :class:`Scripted` reply (the default reply
when none is queued).  A reply can stream in pieces of a few bytes (cut
anywhere: inside an event, a UTF-8 character, a tool call's JSON arguments),
end with a usage-only chunk (OpenAI, when ``stream_options.include_usage``),
carry parallel tool calls, answer HTTP 429/500, send an error event after N
events, or drop the connection after N events.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from attrs import field, frozen

DEFAULT_TEXT = "Hello from the fake upstream."


def _calls(value: Any) -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple((str(name), dict(arguments)) for name, arguments in value or ())


@frozen
class Scripted:
    """One scripted reply.

    :param text: the answer's text (``None``: tool calls only).
    :param tool_calls: ``(name, arguments)`` pairs; more than one = parallel tool calls.
    :param status: HTTP status; 4xx/5xx answer the protocol's error body with ``error``.
    :param piece: when streaming, cut the byte stream into pieces of this many bytes
        (``None``: one write per event).
    :param fragment: characters per text delta and per tool-argument delta.
    :param error_after: streamed: after this many events, an error event, then the end.
    :param drop_after: streamed: after this many events, close the connection abruptly.
    :param delay: seconds to wait before each write (and before a non-streamed answer).
    :param serial: see below.
    """

    text: str | None = DEFAULT_TEXT
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = field(default=(), converter=_calls)
    input_tokens: int = 21
    output_tokens: int = 7
    status: int = 200
    error: str = "scripted upstream error"
    retry_after: str | None = "0"
    piece: int | None = None
    fragment: int = 4
    error_after: int | None = None
    drop_after: int | None = None
    delay: float = 0.0
    #: fixed number for ids and timestamps (default: the request's number), so that two
    #: requests can get byte-identical answers.
    serial: int | None = None


@frozen
class Received:
    """One request as the upstream received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    body = data if isinstance(data, str) else _dumps(data)
    return f"{head}data: {body}\n\n".encode()


# -- the protocols ----------------------------------------------------------------


class _Renderer:
    """One protocol: the non-streamed body, the stream's events, the error shapes."""

    content_type = "text/event-stream"

    def __init__(self, reply: Scripted, request: Any, serial: int) -> None:
        self.reply = reply
        self.request = request if isinstance(request, dict) else {}
        self.model = str(self.request.get("model") or "fake-model")
        self.serial = serial
        self.created = 1_760_000_000 + serial

    def call_id(self, index: int) -> str:
        return f"call_{self.serial:04d}_{index}"

    def arguments(self, index: int) -> str:
        return _dumps(self.reply.tool_calls[index][1])

    def error_body(self) -> dict[str, Any]:
        kind = "rate_limit_exceeded" if self.reply.status == 429 else "server_error"
        return {"error": {"message": self.reply.error, "type": kind, "param": None, "code": kind}}

    def error_event(self) -> bytes:
        return _sse({"error": {"message": self.reply.error, "type": "server_error", "param": None, "code": None}})

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    def events(self) -> list[bytes]:
        raise NotImplementedError


class _OpenAIChat(_Renderer):
    def body(self) -> dict[str, Any]:
        reply = self.reply
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": self.call_id(i), "type": "function", "function": {"name": name, "arguments": self.arguments(i)}}
                for i, (name, _) in enumerate(reply.tool_calls)
            ]
        return {
            "id": f"chatcmpl-{self.serial:06d}",
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None,
                 "finish_reason": "tool_calls" if reply.tool_calls else "stop"}
            ],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            },
            "system_fingerprint": "fp_wilson",
        }

    def events(self) -> list[bytes]:
        reply = self.reply
        options = self.request.get("stream_options") or {}
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": f"chatcmpl-{self.serial:06d}",
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_wilson",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if with_usage:
                data["usage"] = None
            return _sse(data)

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        if reply.text:
            events += [chunk({"content": piece}) for piece in _pieces(reply.text, reply.fragment)]
        for i, (name, _) in enumerate(reply.tool_calls):
            events.append(chunk({"tool_calls": [
                {"index": i, "id": self.call_id(i), "type": "function", "function": {"name": name, "arguments": ""}}
            ]}))
            events += [
                chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                for piece in _pieces(self.arguments(i), reply.fragment)
            ]
        events.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        if with_usage:
            events.append(_sse({
                "id": f"chatcmpl-{self.serial:06d}", "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": "fp_wilson", "choices": [],
                "usage": {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
                          "total_tokens": reply.input_tokens + reply.output_tokens},
            }))
        events.append(_sse("[DONE]"))
        return events


class _OpenAIResponses(_Renderer):
    def _usage(self) -> dict[str, Any]:
        reply = self.reply
        return {
            "input_tokens": reply.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": reply.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }

    def _items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if self.reply.text:
            items.append({
                "id": f"msg_{self.serial:06d}", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": self.reply.text, "annotations": [], "logprobs": []}],
            })
        for i, (name, _) in enumerate(self.reply.tool_calls):
            items.append({
                "id": f"fc_{self.serial:06d}_{i}", "type": "function_call", "status": "completed",
                "call_id": self.call_id(i), "name": name, "arguments": self.arguments(i),
            })
        return items

    def _response(self, status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
        return {
            "id": f"resp_{self.serial:06d}", "object": "response", "created_at": self.created,
            "status": status, "error": None, "incomplete_details": None,
            "instructions": self.request.get("instructions"), "max_output_tokens": None,
            "model": self.model, "output": output, "parallel_tool_calls": True,
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": self.request.get("tools") or [], "top_p": 1.0,
            "truncation": "disabled", "usage": usage, "user": None, "metadata": {},
        }

    def body(self) -> dict[str, Any]:
        return self._response("completed", self._items(), self._usage())

    def error_event(self) -> bytes:
        return _sse({"type": "error", "code": "server_error", "message": self.reply.error, "param": None,
                     "sequence_number": 999}, "error")

    def events(self) -> list[bytes]:
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": self._response("in_progress", [], None)},
            {"type": "response.in_progress", "response": self._response("in_progress", [], None)},
        ]
        for index, item in enumerate(self._items()):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                events.append({"type": "response.output_item.added", "output_index": index,
                               "item": dict(item, status="in_progress", content=[])})
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                events.append({"type": "response.content_part.added", "item_id": item["id"],
                               "output_index": index, "content_index": 0, "part": part})
                for piece in _pieces(text, self.reply.fragment):
                    events.append({"type": "response.output_text.delta", "item_id": item["id"],
                                   "output_index": index, "content_index": 0, "delta": piece, "logprobs": []})
                events.append({"type": "response.output_text.done", "item_id": item["id"], "output_index": index,
                               "content_index": 0, "text": text, "logprobs": []})
                events.append({"type": "response.content_part.done", "item_id": item["id"], "output_index": index,
                               "content_index": 0, "part": dict(part, text=text)})
            else:
                events.append({"type": "response.output_item.added", "output_index": index,
                               "item": dict(item, status="in_progress", arguments="")})
                for piece in _pieces(item["arguments"], self.reply.fragment):
                    events.append({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                                   "output_index": index, "delta": piece})
                events.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                               "output_index": index, "name": item["name"], "arguments": item["arguments"]})
            events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        events.append({"type": "response.completed", "response": self.body()})
        return [_sse(dict(e, sequence_number=n), e["type"]) for n, e in enumerate(events)]


class _Anthropic(_Renderer):
    def call_id(self, index: int) -> str:
        return f"toolu_{self.serial:04d}_{index}"

    def error_body(self) -> dict[str, Any]:
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(self.reply.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": self.reply.error}}

    def error_event(self) -> bytes:
        return _sse({"type": "error", "error": {"type": "overloaded_error", "message": self.reply.error}}, "error")

    def _stop(self) -> str:
        return "tool_use" if self.reply.tool_calls else "end_turn"

    def body(self) -> dict[str, Any]:
        reply = self.reply
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for i, (name, arguments) in enumerate(reply.tool_calls):
            content.append({"type": "tool_use", "id": self.call_id(i), "name": name, "input": arguments})
        return {
            "id": f"msg_{self.serial:06d}", "type": "message", "role": "assistant", "model": self.model,
            "content": content, "stop_reason": self._stop(), "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }

    def events(self) -> list[bytes]:
        reply = self.reply
        start = dict(self.body(), content=[], stop_reason=None,
                     usage={"input_tokens": reply.input_tokens, "output_tokens": 1,
                            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
        index = 0
        if reply.text:
            events.append(("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": {"type": "text", "text": ""}}))
            events.append(("ping", {"type": "ping"}))
            for piece in _pieces(reply.text, reply.fragment):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                       "delta": {"type": "text_delta", "text": piece}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
            index = 1
        for i, (name, _) in enumerate(reply.tool_calls):
            block = {"type": "tool_use", "id": self.call_id(i), "name": name, "input": {}}
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": block}))
            for piece in ["", *_pieces(self.arguments(i), reply.fragment)]:
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "input_json_delta", "partial_json": piece}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": self._stop(), "stop_sequence": None},
                                         "usage": {"output_tokens": reply.output_tokens}}))
        events.append(("message_stop", {"type": "message_stop"}))
        return [_sse(data, name) for name, data in events]


class _Ollama(_Renderer):
    content_type = "application/x-ndjson"

    def error_body(self) -> dict[str, Any]:
        return {"error": self.reply.error}

    def error_event(self) -> bytes:
        return (_dumps({"error": self.reply.error}) + "\n").encode()

    def _created_at(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(self.created))

    def _final(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": self.model, "created_at": self._created_at(), "message": message,
            "done_reason": "stop", "done": True, "total_duration": 1_000_000, "load_duration": 10_000,
            "prompt_eval_count": self.reply.input_tokens, "prompt_eval_duration": 100_000,
            "eval_count": self.reply.output_tokens, "eval_duration": 800_000,
        }

    def _tool_calls(self) -> list[dict[str, Any]]:
        return [{"function": {"name": name, "arguments": arguments}} for name, arguments in self.reply.tool_calls]

    def body(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.reply.text or ""}
        if self.reply.tool_calls:
            message["tool_calls"] = self._tool_calls()
        return self._final(message)

    def events(self) -> list[bytes]:
        lines = []
        if self.reply.text:
            for piece in _pieces(self.reply.text, self.reply.fragment):
                lines.append({"model": self.model, "created_at": self._created_at(),
                              "message": {"role": "assistant", "content": piece}, "done": False})
        if self.reply.tool_calls:
            lines.append({"model": self.model, "created_at": self._created_at(),
                          "message": {"role": "assistant", "content": "", "tool_calls": self._tool_calls()},
                          "done": False})
        lines.append(self._final({"role": "assistant", "content": ""}))
        return [(_dumps(line) + "\n").encode() for line in lines]


def _renderer_for(path: str) -> type[_Renderer] | None:
    if path.endswith("/chat/completions"):
        return _OpenAIChat
    if path.endswith("/responses"):
        return _OpenAIResponses
    if path.endswith("/messages"):
        return _Anthropic
    if path.endswith("/api/chat"):
        return _Ollama
    return None


# -- the server -------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: head and body go out in separate writes: with Nagle's algorithm on, the client's
    #: delayed ACK holds the body back about 40 ms on every answer
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = _dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._headers_buffer.append(b"\r\n" + data)  # head and body in one write
        self.flush_headers()

    def do_GET(self) -> None:  # noqa: N802
        self._receive(b"")
        path = self.path.split("?", 1)[0]
        if path.endswith("/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": "fake-model", "object": "model", "created": 1_760_000_000, "owned_by": "wilson"}]})
        elif path == "/api/tags":
            self._send_json(200, {"models": [{"name": "fake-model:latest", "model": "fake-model:latest"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._receive(body)
        path = self.path.split("?", 1)[0]
        renderer_class = _renderer_for(path)
        if renderer_class is None:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        try:
            request = json.loads(body) if body else {}
        except json.JSONDecodeError:
            self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        reply, serial = self.server.upstream._next(request)
        renderer = renderer_class(reply, request, serial if reply.serial is None else reply.serial)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status >= 400:
            headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else {}
            self._send_json(reply.status, renderer.error_body(), headers)
            return
        streaming = request.get("stream", renderer_class is _Ollama) if isinstance(request, dict) else False
        if not streaming:
            self._send_json(200, renderer.body())
            return
        self._stream(renderer, reply)

    def _receive(self, body: bytes) -> None:
        self.server.upstream._record(
            Received(method=self.command, path=self.path, headers=dict(self.headers.items()), body=body)
        )

    def _stream(self, renderer: _Renderer, reply: Scripted) -> None:
        events = renderer.events()
        dropped = False
        if reply.error_after is not None:
            events = [*events[: reply.error_after], renderer.error_event()]
        elif reply.drop_after is not None:
            events, dropped = events[: reply.drop_after], True
        self.send_response(200)
        self.send_header("Content-Type", renderer.content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for piece in _cut(events, reply.piece):
                if reply.delay:
                    time.sleep(reply.delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            if dropped:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client went away
            self.close_connection = True
            self.server.upstream.disconnects += 1


def _cut(events: Sequence[bytes], piece: int | None) -> Iterator[bytes]:
    if piece is None:
        yield from (e for e in events if e)
        return
    data = b"".join(events)
    for start in range(0, len(data), max(1, piece)):
        yield data[start : start + piece]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    upstream: FakeUpstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that closed its kept-alive connection is no error (nothing printed)."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeUpstream:
    """A local server speaking OpenAI, Anthropic and Ollama with scripted replies."""

    def __init__(self, *replies: Scripted, default: Scripted | None = None,
                 responder: Callable[[Any], Scripted] | None = None) -> None:
        self._queue: deque[Scripted] = deque(replies)
        self.default = default or Scripted()
        self.responder = responder
        self.requests: list[Received] = []
        self.disconnects = 0
        self._lock = threading.Lock()
        self._serial = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle
    def start(self) -> FakeUpstream:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.upstream = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="wilson-fake-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- addresses
    @property
    def port(self) -> int:
        assert self._server is not None, "the upstream is not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: Anthropic's and Ollama's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the OpenAI SDK's ``base_url``."""
        return f"{self.url}/v1"

    # -- scripting
    def push(self, *replies: Scripted) -> None:
        with self._lock:
            self._queue.extend(replies)

    def _next(self, request: Any) -> tuple[Scripted, int]:
        with self._lock:
            self._serial += 1
            serial = self._serial
            if self._queue:
                return self._queue.popleft(), serial
        if self.responder is not None:
            return self.responder(request), serial
        return self.default, serial

    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    @property
    def pending(self) -> int:
        """Queued replies not used yet."""
        with self._lock:
            return len(self._queue)
