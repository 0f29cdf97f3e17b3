"""The :class:`LLM`: an LLM whose every call (plain, async, streamed) is captured."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from wilson_core import plugins
from wilson_core.capture import CallCapture, CaptureRun, current_run
from wilson_core.errors import PluginError
from wilson_core.interfaces import PROVIDERS
from wilson_core.messages import normalize_messages
from wilson_core.records import (
    STATUS_ERROR,
    Interaction,
    ProviderResponse,
    Reply,
    Run,
    ToolCall,
    ToolResult,
)

from .reply import reply_for
from .session import RunSession
from .streaming import AsyncChatStream, ChatStream, StreamState, async_deltas, sync_deltas

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

    def _answered(
        self,
        call: CallCapture,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        params: dict[str, Any],
        response: Any,
    ) -> Reply:
        """Record a call the provider answered; its reply (a wrong answer type raises ``TypeError``)."""
        reply = self._finish(call, messages, tools, params, response, None)
        if reply is None:
            raise TypeError(f"provider {self.provider_name!r} returned {type(response).__name__}")
        return reply

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
        return self._answered(call, normalized, tool_list, params, response)

    async def _achat(
        self, run: CaptureRun, messages: Any, tools: Any, params: dict[str, Any], call_type: str | None = None
    ) -> Reply:
        normalized, tool_list, call = self._start(run, messages, tools, call_type)
        try:
            response = await self.provider.achat(normalized, tool_list or None, params)
        except Exception as exc:
            self._finish(call, normalized, tool_list, params, None, exc)
            raise
        return self._answered(call, normalized, tool_list, params, response)

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
        state = StreamState(self, call, normalized, tool_list, params, run if remember else None)
        provider = self.provider
        return ChatStream(state, sync_deltas(state, lambda: provider.stream(normalized, tool_list or None, params)))

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
        state = StreamState(self, call, normalized, tool_list, params, run if remember else None)
        provider = self.provider
        return AsyncChatStream(
            state, async_deltas(state, lambda: provider.astream(normalized, tool_list or None, params))
        )
