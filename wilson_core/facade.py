"""The facade the app calls instead of its provider SDK; every call is captured.

    llm = LLM(provider="openai:gpt-4o-mini")
    with llm.run(call_type="agent") as run:
        reply = run.chat(messages, tools=tools)
        for call in reply.tool_calls:
            run.record_tool_result(call, execute(call))

        with run.stream(messages) as stream:       # streamed: deltas as they come
            for delta in stream:
                ...
        reply = stream.reply

Capture never breaks the app: each sink is called on its own, and a sink
that raises is counted (:attr:`LLM.capture_failures`), reported through the
``wilson_capture_failed`` hook and skipped.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from . import plugins
from .capture import CallCapture, CaptureRun, _internal_failure, current_run
from .errors import PluginError, WilsonError
from .interfaces import PROVIDERS
from .messages import normalize_messages
from .records import (
    STATUS_ERROR,
    STATUS_INCOMPLETE,
    STATUS_OK,
    Interaction,
    ProviderResponse,
    Reply,
    Run,
    ToolCall,
    ToolResult,
)
from .streams import Delta, StreamAssembler, StreamCut, _close_quietly

#: how many tool calls of standalone calls :meth:`LLM.record_tool_result` remembers.
RECENT_CALLS = 1024


def parse_provider(spec: str) -> tuple[str, str]:
    """``"NAME:MODEL"`` -> ``("NAME", "MODEL")``; the model may contain colons."""
    if not isinstance(spec, str) or ":" not in spec:
        raise PluginError(
            f"provider must be written 'NAME:MODEL' (e.g. 'openai:gpt-4o-mini'), got {spec!r}"
        )
    name, model = spec.split(":", 1)
    return name.strip(), model.strip()


class LLM:
    """An LLM whose every call is captured.

    :param provider: ``"NAME:MODEL"``; NAME is a ``wilson.providers`` driver
        (``openai``, ``ollama``, ``scripted``, and local ones from plugins).
    :param db: the database the built-in sink writes to (default ``$WILSON_DB``
        or ``~/.wilson/data.db``).
    :param capture: ``False`` turns capture off (the call is just forwarded).
    :param call_type: default call type for calls and runs.
    :param options: passed to the provider driver (``base_url``, ``api_key``, ...).
    """

    def __init__(
        self,
        provider: str,
        *,
        db: str | None = None,
        capture: bool = True,
        call_type: str = "agent",
        **options: Any,
    ) -> None:
        self.provider_name, self.model = parse_provider(provider)
        driver = plugins.load_driver(PROVIDERS, self.provider_name)
        self.provider = driver(self.model, **options)
        self.db_path = str(db) if db is not None else None
        self.capture = capture
        self.call_type = call_type
        self.capture_failures = 0
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, CaptureRun] = OrderedDict()
        if capture:
            plugins.plugin_manager()  # load sinks now, not during the first call

    def __repr__(self) -> str:
        return f"LLM(provider={self.provider_name}:{self.model!r}, db={self.db_path!r})"

    def run(self, call_type: str | None = None, metadata: Mapping[str, Any] | None = None) -> RunSession:
        """A run: calls inside it share a run id and get sequence numbers 1, 2, 3...

        Inside ``with llm.run()`` it is also the current run of the context,
        so wrapped SDK calls made there (``wilson_core.integrations``) join it.
        """
        return RunSession(self, Run(call_type=call_type or self.call_type, metadata=dict(metadata or {})))

    def _session(self, call_type: str | None) -> CaptureRun:
        """The run of a call outside ``llm.run()``: the current ``wilson_core.run()``, or its own."""
        current = current_run()
        if current is not None:
            return current
        return RunSession(self, Run(call_type=call_type or self.call_type), standalone=True)

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        call_type: str | None = None,
        **params: Any,
    ) -> Reply:
        """One call outside ``llm.run()``: it joins the current ``wilson_core.run()``, else gets a run of its own."""
        session = self._session(call_type)
        return self._remember(session, self._chat(session, messages, tools, params, call_type))

    async def achat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        call_type: str | None = None,
        **params: Any,
    ) -> Reply:
        """Async variant of :meth:`chat`."""
        session = self._session(call_type)
        return self._remember(session, await self._achat(session, messages, tools, params, call_type))

    def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        call_type: str | None = None,
        **params: Any,
    ) -> ChatStream:
        """:meth:`chat`, streamed: iterate the result for deltas, then read its ``reply``."""
        session = self._session(call_type)
        return self._stream(session, messages, tools, params, call_type, remember=True)

    def astream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        call_type: str | None = None,
        **params: Any,
    ) -> AsyncChatStream:
        """Async variant of :meth:`stream` (``async for delta in llm.astream(...)``)."""
        session = self._session(call_type)
        return self._astream(session, messages, tools, params, call_type, remember=True)

    def record_tool_result(
        self,
        call: ToolCall | str,
        content: Any,
        *,
        is_error: bool = False,
        duration_ms: float | None = None,
    ) -> ToolResult:
        """Record a tool result for a tool call returned by a standalone :meth:`chat`.

        (Inside a run, use ``run.record_tool_result``.)  The last
        :data:`RECENT_CALLS` standalone tool calls are remembered.  Apps that
        send the result back as a ``role: "tool"`` message in the next call
        need not call this: that message is recorded as the result.
        """
        call_id = call if isinstance(call, str) else call.id
        with self._lock:
            session = self._recent.get(call_id)
        if session is None:
            raise KeyError(f"tool call {call_id!r} was not returned by a recent standalone call")
        return session.record_tool_result(
            call, content, is_error=is_error, duration_ms=duration_ms, db=self.db_path, count=self._counter_for(session)
        )

    def _remember(self, session: CaptureRun, reply: Reply) -> Reply:
        if reply.tool_calls:
            with self._lock:
                for call in reply.tool_calls:
                    self._recent[call.id] = session
                while len(self._recent) > RECENT_CALLS:
                    self._recent.popitem(last=False)
        return reply

    def close(self) -> None:
        self.provider.close()

    # -- capture -----------------------------------------------------------

    def _count_failure(self) -> None:
        with self._lock:
            self.capture_failures += 1

    def _counter_for(self, run: CaptureRun) -> Any:
        """The extra failure counter for calls in ``run`` (a run of this LLM counts already)."""
        if isinstance(run, RunSession) and run.llm is self:
            return None
        return self._count_failure

    def _start(
        self, run: CaptureRun, messages: Any, tools: Any, call_type: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], CallCapture]:
        normalized = normalize_messages(messages)
        tool_list = [dict(t) for t in tools] if tools else []
        call = CallCapture(run, call_type=call_type, db=self.db_path, count=self._counter_for(run))
        return normalized, tool_list, call

    def _finish(
        self,
        call: CallCapture,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        params: dict[str, Any],
        response: Any,
        error: BaseException | None,
    ) -> Reply | None:
        """Build and record the call's interaction; the reply, or ``None`` for a failed call."""
        duration_ms = call.elapsed_ms()
        if response is not None and not isinstance(response, ProviderResponse):
            error = TypeError(
                f"provider {self.provider_name!r} returned {type(response).__name__}, not a ProviderResponse"
            )
            response = None
        common = dict(
            provider=self.provider_name, messages=messages, tools=tools, params=params, duration_ms=duration_ms
        )
        if response is None:
            interaction = call.interaction(model=self.model, status=STATUS_ERROR, error=error, **common)
            self._record(call, interaction)
            return None
        interaction = call.interaction(
            model=response.model or self.model,
            content=response.content,
            tool_calls=response.tool_calls,
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            **common,
        )
        self._record(call, interaction)
        return reply_for(interaction)

    def _record(self, call: CallCapture, interaction: Interaction) -> None:
        if self.capture:
            call.record(interaction)
        else:
            call.run.remember(interaction)  # tool results can still be recorded (and are not written)

    def _chat(
        self, run: CaptureRun, messages: Any, tools: Any, params: dict[str, Any], call_type: str | None = None
    ) -> Reply:
        normalized, tool_list, call = self._start(run, messages, tools, call_type)
        try:
            response = self.provider.chat(normalized, tool_list or None, params)
        except Exception as exc:
            self._finish(call, normalized, tool_list, params, None, exc)
            raise
        reply = self._finish(call, normalized, tool_list, params, response, None)
        if reply is None:
            raise TypeError(f"provider {self.provider_name!r} returned {type(response).__name__}")
        return reply

    async def _achat(
        self, run: CaptureRun, messages: Any, tools: Any, params: dict[str, Any], call_type: str | None = None
    ) -> Reply:
        normalized, tool_list, call = self._start(run, messages, tools, call_type)
        try:
            response = await self.provider.achat(normalized, tool_list or None, params)
        except Exception as exc:
            self._finish(call, normalized, tool_list, params, None, exc)
            raise
        reply = self._finish(call, normalized, tool_list, params, response, None)
        if reply is None:
            raise TypeError(f"provider {self.provider_name!r} returned {type(response).__name__}")
        return reply


    def _stream(
        self,
        run: CaptureRun,
        messages: Any,
        tools: Any,
        params: dict[str, Any],
        call_type: str | None = None,
        remember: bool = False,
    ) -> ChatStream:
        normalized, tool_list, call = self._start(run, messages, tools, call_type)
        state = _StreamState(self, call, normalized, tool_list, params, run if remember else None)
        provider = self.provider
        return ChatStream(state, _sync_deltas(state, lambda: provider.stream(normalized, tool_list or None, params)))

    def _astream(
        self,
        run: CaptureRun,
        messages: Any,
        tools: Any,
        params: dict[str, Any],
        call_type: str | None = None,
        remember: bool = False,
    ) -> AsyncChatStream:
        normalized, tool_list, call = self._start(run, messages, tools, call_type)
        state = _StreamState(self, call, normalized, tool_list, params, run if remember else None)
        provider = self.provider
        return AsyncChatStream(
            state, _async_deltas(state, lambda: provider.astream(normalized, tool_list or None, params))
        )


def reply_for(interaction: Interaction) -> Reply:
    """The :class:`Reply` the app gets for a captured call."""
    return Reply(
        content=interaction.response_content,
        tool_calls=interaction.tool_calls,
        input_tokens=interaction.input_tokens,
        output_tokens=interaction.output_tokens,
        total_tokens=interaction.total_tokens,
        duration_ms=interaction.duration_ms,
        interaction_id=interaction.id,
        run_id=interaction.run_id,
        model=interaction.model,
        provider=interaction.provider,
    )


class RunSession(CaptureRun):
    """A run in progress; use as ``with llm.run() as run`` or ``async with``.

    It is a :class:`~wilson_core.capture.CaptureRun`: inside the ``with``
    block it is the context's current run.
    """

    def __init__(self, llm: LLM, run: Run, *, standalone: bool = False) -> None:
        super().__init__(run, db=llm.db_path, standalone=standalone)
        self.own_db = True  # the LLM's database, also when that is the default one
        self.llm = llm

    @property
    def capturing(self) -> bool:
        return self.llm.capture

    def _count_failure(self) -> None:
        self.llm._count_failure()

    def __enter__(self) -> RunSession:
        super().__enter__()
        return self

    async def __aenter__(self) -> RunSession:
        return self.__enter__()

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> Reply:
        """Call the model with ``messages`` (and ``tools``); the call is captured.

        :raises Exception: whatever the provider raised (after recording the
            failed call as a ``status="error"`` interaction).
        """
        return self.llm._chat(self, messages, tools, params)

    async def achat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> Reply:
        """Async variant of :meth:`chat`."""
        return await self.llm._achat(self, messages, tools, params)

    def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> ChatStream:
        """Call the model and read its answer as it comes (see :class:`ChatStream`)."""
        return self.llm._stream(self, messages, tools, params)

    def astream(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> AsyncChatStream:
        """Async variant of :meth:`stream` (``async for delta in run.astream(...)``)."""
        return self.llm._astream(self, messages, tools, params)


# -- streams -----------------------------------------------------------------------------


class _StreamState:
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


def _sync_deltas(state: _StreamState, open_events: Any) -> Iterator[Delta]:
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


async def _async_deltas(state: _StreamState, open_events: Any) -> AsyncIterator[Delta]:
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


def _abandon(deltas: Any, state: _StreamState) -> None:
    """The app dropped or closed a stream: close the generator (and its connection), record it."""
    with contextlib.suppress(Exception):  # "generator already executing" (another thread)
        deltas.close()
    state.finish(STATUS_INCOMPLETE, state.abandoned())


def _abandon_async(deltas: Any, state: _StreamState, loop_box: list[Any]) -> None:
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

    _state: _StreamState

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

    def __init__(self, state: _StreamState, deltas: Iterator[Delta]) -> None:
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

    def __init__(self, state: _StreamState, deltas: AsyncIterator[Delta]) -> None:
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
