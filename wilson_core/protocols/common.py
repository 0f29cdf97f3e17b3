"""What every wire protocol converter produces, and the stream framings they share.

A converter module (``openai_chat``, ``openai_responses``, ``anthropic``, ``ollama``)
has the same four parts, all pure (no I/O, no SDK import):

- ``parse_request(body) -> Request``: the request body as Wilson's normalized
  messages (the chat-template shape TRL uses: tool call arguments as dicts, tool
  results as ``role: "tool"`` messages with ``tool_call_id``), tools (OpenAI
  function-tool shape) and parameters;
- ``parse_response(body) -> Result``: a non-streamed response body;
- ``Assembler``: fed a stream's events in order (``feed`` with one decoded
  event, or ``feed_bytes`` with raw bytes cut anywhere), ``result()`` gives what
  has been assembled so far, complete or not;
- ``error_text(status, body) -> str``: a readable error from an HTTP error body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from wilson_core.messages import parse_arguments
from wilson_core.records import STATUS_ERROR, STATUS_INCOMPLETE, STATUS_OK, ToolCall, new_id


def _tupled(value: Any) -> tuple:
    return tuple(value) if value is not None else ()


@frozen
class Request:
    """A request body in Wilson's terms."""

    messages: tuple[dict[str, Any], ...] = field(converter=_tupled)
    tools: tuple[dict[str, Any], ...] = field(default=(), converter=_tupled)
    #: everything else the app sent (temperature, tool_choice, ...), minus model/stream keys.
    params: dict[str, Any] = field(factory=dict)
    model: str | None = None
    stream: bool = False


@frozen
class Result:
    """A response (streamed or not) in Wilson's terms.

    ``status`` is ``ok``, ``error`` (an error body or an error event in the
    stream) or ``incomplete`` (the stream stopped before its end: dropped,
    abandoned or cut); ``content`` and ``tool_calls`` then hold what came.
    """

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = field(default=(), converter=_tupled)
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    model: str | None = None
    finish_reason: str | None = None
    status: str = STATUS_OK
    error: str | None = None

    def answer_parts(self) -> dict[str, Any]:
        """The answer as keywords of a capture's ``finish`` (what came, its tokens, its status)."""
        return {
            "content": self.content,
            "tool_calls": self.tool_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "status": self.status,
        }


class ProtocolError(ValueError):
    """A body that is not what the protocol says (not JSON, not an object, no messages)."""


def as_object(body: Any, what: str) -> Mapping[str, Any]:
    """``body`` (bytes, text or a mapping) as a JSON object, or :class:`ProtocolError`."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ProtocolError(f"{what} is not JSON: {exc}") from None
    if not isinstance(body, Mapping):
        raise ProtocolError(f"{what} must be a JSON object, got {type(body).__name__}")
    return body


def text_of(parts: Any, kinds: tuple[str, ...] = ("text", "input_text", "output_text")) -> str | None:
    """The text of message content: a string, or the text parts of a list joined."""
    if parts is None:
        return None
    if isinstance(parts, str):
        return parts
    if isinstance(parts, list):
        texts = [
            p.get("text", "") for p in parts
            if isinstance(p, Mapping) and p.get("type") in kinds and isinstance(p.get("text"), str)
        ]
        return "".join(texts) if texts else None
    return str(parts)


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def total(input_tokens: int | None, output_tokens: int | None, given: Any = None) -> int | None:
    if integer(given) is not None:
        return given
    if input_tokens is None and output_tokens is None:
        return None
    return (input_tokens or 0) + (output_tokens or 0)


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def joined(pieces: Sequence[str]) -> str | None:
    """Text pieces as one text; ``None`` when no piece came (an empty piece counts)."""
    return "".join(pieces) if pieces else None


def request_of(
    data: Mapping[str, Any], messages: Any, tools: Any, not_params: set[str], stream: bool | None = None
) -> Request:
    """A :class:`Request`: the keys of ``data`` not in ``not_params`` are its parameters."""
    return Request(
        messages=messages,
        tools=tools,
        params={k: v for k, v in data.items() if k not in not_params},
        model=string(data.get("model")),
        stream=bool(data.get("stream")) if stream is None else stream,
    )


def tool_call(call_id: Any, name: Any, arguments: Any, *, prefix: str = "call") -> ToolCall:
    """A tool call of a response: ``arguments`` (JSON text or an object) parsed,
    an id made up (``PREFIX_...``) when none came, ``?`` when it has no name."""
    parsed, raw = parse_arguments(arguments)
    return ToolCall(
        id=str(call_id or f"{prefix}_{new_id()[:12]}"),
        name=name or "?",
        arguments=parsed,
        raw_arguments=raw,
    )


def answer(
    content: str | None,
    tool_calls: Sequence[ToolCall],
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    total_tokens: Any = None,
    model: str | None = None,
    finish_reason: str | None = None,
    status: str = STATUS_OK,
    error: str | None = None,
) -> Result:
    """A :class:`Result`; its total is ``total_tokens`` when the body gave one, else input + output."""
    return Result(
        content=content,
        tool_calls=tool_calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total(input_tokens, output_tokens, total_tokens),
        model=model,
        finish_reason=finish_reason,
        status=status,
        error=error,
    )


def tool_entry(call_id: str, name: str, arguments: dict[str, Any], raw: str | None = None) -> dict[str, Any]:
    """A tool call inside a stored assistant message (arguments as a dict)."""
    entry: dict[str, Any] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if raw is not None:
        entry["function"]["raw_arguments"] = raw
    return entry


def function_tool(name: Any, description: Any, parameters: Any) -> dict[str, Any]:
    """A tool definition in the OpenAI function-tool shape Wilson stores."""
    function: dict[str, Any] = {"name": name}
    if description is not None:
        function["description"] = description
    function["parameters"] = parameters if parameters is not None else {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def status_of(error: str | None, finished: bool, interrupted: str | None) -> tuple[str, str | None]:
    """(status, error) of a stream: an error event wins; a stream that reached its
    last event is complete even if it was closed afterwards; else it is incomplete."""
    if error is not None:
        return STATUS_ERROR, error
    if finished:
        return STATUS_OK, None
    return STATUS_INCOMPLETE, interrupted or "the stream ended before its last event"


# -- framings -------------------------------------------------------------------


@frozen
class SSEEvent:
    """One server-sent event: its ``event`` name (``None`` when absent) and its data."""

    data: str
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """Server-sent events from bytes cut anywhere (inside a line, a UTF-8 character, a CRLF).

    Follows the HTML standard: lines end with CRLF, LF or CR; ``data`` lines
    are joined with LF; a blank line dispatches; an event without a trailing
    blank line when the stream ends is dropped, as clients drop it.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        buffer = self._buffer + chunk
        start = 0
        size = len(buffer)
        while start < size:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start, lf if lf != -1 else size)
            if cr != -1:
                if cr + 1 == size:  # a CR at the end: wait, an LF may follow
                    break
                end, next_start = cr, cr + 2 if buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
            elif lf != -1:
                end, next_start = lf, lf + 1
            else:
                break
            self._line(buffer[start:end].decode("utf-8", "replace"), events)
            start = next_start
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data or self._event is not None:
                events.append(SSEEvent(data="\n".join(self._data), event=self._event, id=self._id))
            self._data, self._event = [], None
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value


class NDJSONDecoder:
    """JSON lines from bytes cut anywhere; ``flush`` gives a last line without newline."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[str]:
        buffer = self._buffer + chunk
        *lines, self._buffer = buffer.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines if line.strip()]

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, b""
        return [rest.decode("utf-8", "replace")] if rest.strip() else []


class Assembler:
    """Base of the stream assemblers: decoding bytes and JSON, counting what came.

    Subclasses implement :meth:`feed` (one decoded JSON event; returns ``True``
    when it carried output: text or a tool call) and :meth:`result`.
    """

    framing = "sse"

    def __init__(self) -> None:
        self._sse = SSEDecoder() if self.framing == "sse" else None
        self._ndjson = NDJSONDecoder() if self.framing == "ndjson" else None
        self.finished = False
        self.error: str | None = None
        #: events that were not JSON objects (skipped, counted).
        self.malformed = 0
        self.events = 0

    def feed(self, data: Mapping[str, Any], event: str | None = None) -> bool:
        raise NotImplementedError

    def result(self, interrupted: str | None = None) -> Result:
        raise NotImplementedError

    def assembled(
        self,
        content: str | None,
        tool_calls: Sequence[ToolCall],
        *,
        interrupted: str | None = None,
        finished: bool | None = None,
        **parts: Any,
    ) -> Result:
        """What came, as a :class:`Result` (``parts``: tokens, model, finish reason) with the
        stream's status (see :func:`status_of`; ``finished`` defaults to :attr:`finished`)."""
        status, error = status_of(self.error, self.finished if finished is None else finished, interrupted)
        return answer(content, tool_calls, status=status, error=error, **parts)

    def feed_text(self, data: str, event: str | None = None) -> bool:
        """One event's data as text (``[DONE]`` ends an OpenAI stream)."""
        if data.strip() == "[DONE]":
            self.finished = True
            return False
        try:
            value = json.loads(data)
        except (json.JSONDecodeError, RecursionError):
            value = None
        if not isinstance(value, Mapping):
            self.malformed += 1
            return False
        self.events += 1
        return self.feed(value, event)

    def feed_bytes(self, chunk: bytes) -> bool:
        """Raw bytes of the stream, cut anywhere; ``True`` when they carried output."""
        output = False
        for data, event in self._decoded(chunk):
            output = self.feed_text(data, event) or output
        return output

    def end(self) -> None:
        """The byte stream has ended: decode what is left (a last NDJSON line)."""
        if self._ndjson is not None:
            for line in self._ndjson.flush():
                self.feed_text(line)

    def _decoded(self, chunk: bytes) -> Iterator[tuple[str, str | None]]:
        if self._sse is not None:
            for sse in self._sse.feed(chunk):
                yield sse.data, sse.event
        elif self._ndjson is not None:
            for line in self._ndjson.feed(chunk):
                yield line, None


def error_message(body: Any) -> str | None:
    """The message of the usual error shapes: ``{"error": {"message"}}``, ``{"error": "..."}``."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except (json.JSONDecodeError, RecursionError, UnicodeDecodeError):
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return text.strip()[:500] or None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            message = error.get("message")
            kind = error.get("type") or error.get("code")
            if isinstance(message, str):
                return f"{kind}: {message}" if isinstance(kind, str) and kind else message
        if isinstance(error, str):
            return error
        if isinstance(body.get("message"), str):
            return body["message"]
    return None


def http_error_text(status: int, body: Any) -> str:
    message = error_message(body)
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"
