"""Streamed calls: the deltas apps read, the events providers yield, and their assembly.

A provider's ``stream()`` yields :class:`TextDelta` and :class:`ToolCallDelta`
in the order the model produced them, and :class:`StreamInfo` (usage, model,
finish reason) where the protocol sends it.  The facade passes the deltas on
to the app and assembles the whole answer with :class:`StreamAssembler`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from attrs import frozen

from .errors import ProviderError
from .messages import parse_arguments
from .records import ProviderResponse, ToolCall, new_id


@frozen
class TextDelta:
    """A piece of the answer's text."""

    text: str


@frozen
class ToolCallDelta:
    """A piece of tool call number ``index`` (0, 1, ... in the answer).

    The first piece of a call carries its ``id`` and ``name``; ``arguments``
    is a fragment of the arguments' JSON text: joined across pieces it is
    the whole text.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@frozen
class StreamInfo:
    """What a stream says besides output: usage, the model that answered, why it stopped.

    Providers yield it (once or more; later values win); apps never see it.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    model: str | None = None
    finish_reason: str | None = None


#: what a provider's ``stream()`` yields.
StreamEvent = TextDelta | ToolCallDelta | StreamInfo
#: what the app reads from ``run.stream()``.
Delta = TextDelta | ToolCallDelta


class StreamCut(ProviderError):
    """The stream stopped before its end (the connection dropped, the server went away).

    The facade records such a call as ``incomplete`` with what came before.
    """


def response_events(response: ProviderResponse) -> Iterator[StreamEvent]:
    """A whole answer as stream events (one text chunk, one piece per tool call)."""
    if not isinstance(response, ProviderResponse):
        raise TypeError(f"a provider returned {type(response).__name__}, not a ProviderResponse")
    if response.content:
        yield TextDelta(response.content)
    for index, call in enumerate(response.tool_calls):
        arguments = call.raw_arguments
        if arguments is None:
            arguments = json.dumps(call.arguments, ensure_ascii=False) if call.arguments else ""
        yield ToolCallDelta(index=index, id=call.id, name=call.name, arguments=arguments)
    yield StreamInfo(
        input_tokens=response.input_tokens, output_tokens=response.output_tokens, model=response.model
    )


class StreamAssembler:
    """The answer so far, from a stream's events: text, tool calls, usage."""

    __slots__ = ("_calls", "_text", "chunks", "finish_reason", "input_tokens", "model", "output_tokens")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, list[Any]] = {}
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        #: deltas passed to the app.
        self.chunks = 0

    def add(self, event: Any) -> Delta | None:
        """Take one provider event; the delta for the app, or ``None`` (usage, empty pieces)."""
        if type(event) is TextDelta:
            if not event.text:
                return None
            self._text.append(event.text)
        elif type(event) is ToolCallDelta:
            entry = self._calls.get(event.index)
            if entry is None:
                entry = self._calls[event.index] = [None, None, []]
            if event.id and not entry[0]:
                entry[0] = event.id
            if event.name and not entry[1]:
                entry[1] = event.name
            if event.arguments:
                entry[2].append(event.arguments)
        elif type(event) is StreamInfo:
            for name in ("input_tokens", "output_tokens", "model", "finish_reason"):
                value = getattr(event, name)
                if value is not None:
                    setattr(self, name, value)
            return None
        else:
            raise TypeError(f"a provider stream yielded {type(event).__name__}, not a stream event")
        self.chunks += 1
        return event

    @property
    def text(self) -> str | None:
        """The text so far (``None`` when there was none, as in a non-streamed answer)."""
        return "".join(self._text) if self._text else None

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls so far, arguments joined and parsed (kept raw when not valid JSON)."""
        calls = []
        for index in sorted(self._calls):
            entry = self._calls[index]
            if not entry[0]:
                entry[0] = f"call_{new_id()[:12]}"  # once: the same id every time it is asked
            call_id, name, pieces = entry
            arguments, raw = parse_arguments("".join(pieces))
            calls.append(
                ToolCall(id=call_id, name=name or "?", arguments=arguments,
                         raw_arguments=raw)
            )
        return tuple(calls)


_pool: Any = None
_DONE = object()


def _executor() -> Any:
    """Worker threads that read sync streams for async callers (made on first use)."""
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="wilson-stream")
    return _pool


def _close_quietly(iterator: Any) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing must not fail the app; the stream is over anyway
            pass


async def thread_stream(iterator: Iterator[Any]) -> Any:
    """Read a blocking iterator from async code: each item is taken in a worker thread.

    When the reader stops (``break``, an exception, cancellation) the iterator
    is closed in the worker thread as soon as the item being read is done, so
    neither the thread nor the iterator's connection or model is left behind.
    """
    import asyncio

    pending = None
    try:
        while True:
            pending = _executor().submit(next, iterator, _DONE)
            item = await asyncio.wrap_future(pending)
            if item is _DONE:
                pending = None
                return
            yield item
    finally:
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _: _close_quietly(iterator))
        else:
            _executor().submit(_close_quietly, iterator)
