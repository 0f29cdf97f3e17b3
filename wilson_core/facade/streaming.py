"""Streamed facade calls: :class:`ChatStream`, :class:`AsyncChatStream` and their recording.

A stream's call is recorded once, when it ends: at its end, when the provider
fails (``error``), or when the app stops reading (``incomplete``).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from wilson_core.capture import CallCapture, CaptureRun, _internal_failure
from wilson_core.errors import WilsonError
from wilson_core.records import (
    STATUS_ERROR,
    STATUS_INCOMPLETE,
    STATUS_OK,
    Interaction,
    Reply,
    ToolCall,
)
from wilson_core.streams import Delta, StreamAssembler, StreamCut, _close_quietly

from .reply import reply_for

if TYPE_CHECKING:
    from .llm import LLM


class StreamState:
    """What a stream has assembled, and its recording (once: at the end, or when abandoned)."""

    __slots__ = ("assembler", "call", "error", "interaction", "llm", "lock", "messages", "params",
                 "remember", "reply", "status", "tools")

    def __init__(
        self,
        llm: LLM,
        call: CallCapture,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        params: dict[str, Any],
        remember: CaptureRun | None,
    ) -> None:
        self.llm = llm
        self.call = call
        self.messages = messages
        self.tools = tools
        self.params = params
        self.remember = remember
        self.assembler = StreamAssembler()
        self.lock = threading.Lock()
        self.status: str | None = None
        self.error: str | None = None
        self.interaction: Interaction | None = None
        self.reply: Reply | None = None

    def add(self, event: Any) -> Any:
        delta = self.assembler.add(event)
        if delta is not None and self.call.ttft_ms is None:
            self.call.first_token()
        return delta

    def abandoned(self) -> str:
        return f"the app stopped reading the stream after {self.assembler.chunks} chunk(s)"

    def finish(self, status: str, error: BaseException | str | None) -> None:
        """Record the call with what was assembled; once; never raises."""
        with self.lock:
            if self.status is not None:
                return
            self.status = status
        llm = self.llm
        try:
            if isinstance(error, BaseException):
                error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            self.error = error
            assembled = self.assembler
            interaction = self.call.interaction(
                provider=llm.provider_name,
                model=assembled.model or llm.model,
                messages=self.messages,
                tools=self.tools,
                params=self.params,
                content=assembled.text,
                tool_calls=assembled.tool_calls(),
                input_tokens=assembled.input_tokens,
                output_tokens=assembled.output_tokens,
                status=status,
                error=error,
            )
            llm._record(self.call, interaction)
            self.interaction = interaction
            if status != STATUS_ERROR:
                self.reply = reply_for(interaction)
                if self.remember is not None and status == STATUS_OK:
                    llm._remember(self.remember, self.reply)
        except Exception as exc:
            _internal_failure("recording a stream", exc, llm._count_failure)


def sync_deltas(state: StreamState, open_events: Any) -> Iterator[Delta]:
    events = None
    status, error = STATUS_INCOMPLETE, None
    try:
        events = open_events()
        for event in events:
            delta = state.add(event)
            if delta is not None:
                yield delta
        status = STATUS_OK
    except GeneratorExit:
        error = state.abandoned()
        raise
    except StreamCut as exc:
        error = exc
        raise
    except Exception as exc:
        status, error = STATUS_ERROR, exc
        raise
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: the app stops
        error = exc
        raise
    finally:
        try:
            state.finish(status, error)
        finally:
            if events is not None:
                _close_quietly(events)


async def async_deltas(state: StreamState, open_events: Any) -> AsyncIterator[Delta]:
    import asyncio

    events = None
    status, error = STATUS_INCOMPLETE, None
    try:
        events = open_events()
        async for event in events:
            delta = state.add(event)
            if delta is not None:
                yield delta
        status = STATUS_OK
    except GeneratorExit:
        error = state.abandoned()
        raise
    except asyncio.CancelledError:
        error = f"cancelled after {state.assembler.chunks} chunk(s)"
        raise
    except StreamCut as exc:
        error = exc
        raise
    except Exception as exc:
        status, error = STATUS_ERROR, exc
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        state.finish(status, error)
        if events is not None:
            with contextlib.suppress(Exception):
                await events.aclose()


def _abandon(deltas: Any, state: StreamState) -> None:
    """The app dropped or closed a stream: close the generator (and its connection), record it."""
    with contextlib.suppress(Exception):  # "generator already executing" (another thread)
        deltas.close()
    state.finish(STATUS_INCOMPLETE, state.abandoned())


def _abandon_async(deltas: Any, state: StreamState, loop_box: list[Any]) -> None:
    """An async stream was dropped unclosed: record it now, close its connection on its loop."""
    state.finish(STATUS_INCOMPLETE, state.abandoned())
    loop = loop_box[0]
    if loop is None or loop.is_closed():
        return

    def close() -> None:
        import asyncio

        asyncio.ensure_future(deltas.aclose())

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(close)


class _StreamView:
    """What a stream has given so far, and its recorded :class:`Reply` once it ended."""

    _state: StreamState

    @property
    def reply(self) -> Reply:
        """The same :class:`Reply` as ``chat()`` returns, once the stream has ended.

        A stream the app stopped reading early has a reply with what came
        (recorded as ``incomplete``); a failed stream raised its error instead.
        """
        reply = self._state.reply
        if reply is None:
            if self._state.status == STATUS_ERROR:
                raise WilsonError(f"the stream failed ({self._state.error}); it has no reply")
            raise WilsonError("the stream has not ended yet: read it to the end (or close it) first")
        return reply

    @property
    def done(self) -> bool:
        return self._state.status is not None

    @property
    def status(self) -> str | None:
        """``ok``, ``incomplete`` or ``error`` once ended; ``None`` while streaming."""
        return self._state.status

    @property
    def text(self) -> str:
        """The text so far."""
        return self._state.assembler.text or ""

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls so far (arguments of a call still streaming may not parse yet)."""
        return self._state.assembler.tool_calls()

    @property
    def ttft_ms(self) -> float | None:
        """Milliseconds from the request to the first delta."""
        return self._state.call.ttft_ms


class ChatStream(_StreamView):
    """A streamed call: iterate it for :class:`TextDelta` / :class:`ToolCallDelta`, then read :attr:`reply`.

        with llm.stream(messages, tools=tools) as stream:
            for delta in stream:
                if isinstance(delta, TextDelta):
                    print(delta.text, end="")
        reply = stream.reply

    The call is recorded once, when the stream ends: at its end, when the
    provider fails, or when the app stops reading (``break`` then leaving the
    ``with`` block or dropping the stream, an exception, :meth:`close`); then
    with the partial answer and status ``incomplete``.
    """

    def __init__(self, state: StreamState, deltas: Iterator[Delta]) -> None:
        self._state = state
        self._deltas = deltas
        self._finalizer = weakref.finalize(self, _abandon, deltas, state)

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> Delta:
        return next(self._deltas)

    def close(self) -> None:
        """Stop reading: close the connection and record what came (``incomplete`` if not ended)."""
        self._finalizer()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def until_done(self) -> Reply:
        """Read the rest of the stream and return its :attr:`reply`."""
        for _ in self:
            pass
        return self.reply


class AsyncChatStream(_StreamView):
    """Async variant of :class:`ChatStream`: ``async for delta in stream``, ``async with``, :meth:`aclose`."""

    def __init__(self, state: StreamState, deltas: AsyncIterator[Delta]) -> None:
        self._state = state
        self._deltas = deltas
        self._loop: list[Any] = [None]
        self._finalizer = weakref.finalize(self, _abandon_async, deltas, state, self._loop)

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> Delta:
        if self._loop[0] is None:
            import asyncio

            self._loop[0] = asyncio.get_running_loop()
        return await self._deltas.__anext__()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Stop reading: close the connection and record what came (``incomplete`` if not ended)."""
        if self._finalizer.alive:
            self._finalizer.detach()
            await self._deltas.aclose()  # type: ignore[attr-defined]
            self._state.finish(STATUS_INCOMPLETE, self._state.abandoned())

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def until_done(self) -> Reply:
        """Read the rest of the stream and return its :attr:`reply`."""
        async for _ in self:
            pass
        return self.reply
