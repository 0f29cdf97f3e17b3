"""The facade the app calls instead of its provider SDK; every call is captured.

    llm = LLM(provider="openai:gpt-4o-mini")
    with llm.run(call_type="agent") as run:
        reply = run.chat(messages, tools=tools)
        for call in reply.tool_calls:
            run.record_tool_result(call, execute(call))

Capture never breaks the app: each sink is called on its own, and a sink
that raises is counted (:attr:`LLM.capture_failures`), reported through the
``wilson_capture_failed`` hook and skipped.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from . import plugins
from .errors import PluginError
from .interfaces import PROVIDERS
from .messages import normalize_messages
from .records import (
    STATUS_ERROR,
    Interaction,
    ProviderResponse,
    Reply,
    Run,
    ToolCall,
    ToolResult,
    utcnow,
)

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


def _call_isolated(hook_name: str, failed: Callable[[str, BaseException], None], **kwargs: Any) -> None:
    """Call every implementation of a broadcast hook on its own; report, never raise."""
    caller = getattr(plugins.hook(), hook_name)
    for impl in caller.get_hookimpls():
        try:
            impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception as exc:
            failed(impl.plugin_name, exc)


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
        self._recent: OrderedDict[str, RunSession] = OrderedDict()
        if capture:
            plugins.plugin_manager()  # load sinks now, not during the first call

    def __repr__(self) -> str:
        return f"LLM(provider={self.provider_name}:{self.model!r}, db={self.db_path!r})"

    def run(self, call_type: str | None = None, metadata: Mapping[str, Any] | None = None) -> RunSession:
        """A run: calls inside it share a run id and get sequence numbers 1, 2, 3..."""
        return RunSession(self, Run(call_type=call_type or self.call_type, metadata=dict(metadata or {})))

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        call_type: str | None = None,
        **params: Any,
    ) -> Reply:
        """One call outside any run: it gets a run of its own."""
        session = RunSession(self, Run(call_type=call_type or self.call_type), standalone=True)
        return self._remember(session, session.chat(messages, tools=tools, **params))

    async def achat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        call_type: str | None = None,
        **params: Any,
    ) -> Reply:
        """Async variant of :meth:`chat`."""
        session = RunSession(self, Run(call_type=call_type or self.call_type), standalone=True)
        return self._remember(session, await session.achat(messages, tools=tools, **params))

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
        :data:`RECENT_CALLS` standalone tool calls are remembered.
        """
        call_id = call if isinstance(call, str) else call.id
        with self._lock:
            session = self._recent.get(call_id)
        if session is None:
            raise KeyError(f"tool call {call_id!r} was not returned by a recent standalone call")
        return session.record_tool_result(call, content, is_error=is_error, duration_ms=duration_ms)

    def _remember(self, session: RunSession, reply: Reply) -> Reply:
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

    def _failed(self, record: Any) -> Callable[[str, BaseException], None]:
        def report(sink: str, error: BaseException) -> None:
            with self._lock:
                self.capture_failures += 1
            warnings.warn(f"capture sink {sink!r} failed: {type(error).__name__}: {error}", stacklevel=4)
            _call_isolated(
                "wilson_capture_failed",
                lambda *_: None,
                record=record,
                sink=sink,
                error=error,
                db_path=self.db_path,
            )

        return report

    def _emit(self, hook_name: str, record: Any, **kwargs: Any) -> None:
        if self.capture:
            _call_isolated(hook_name, self._failed(record), db_path=self.db_path, **kwargs)


class RunSession:
    """A run in progress; use as ``with llm.run() as run`` or ``async with``."""

    def __init__(self, llm: LLM, run: Run, *, standalone: bool = False) -> None:
        self.llm = llm
        self.record = run
        self.standalone = standalone
        self._sequence = 0
        self._lock = threading.Lock()
        self._calls: dict[str, tuple[str, ToolCall]] = {}

    @property
    def id(self) -> str:
        return self.record.id

    def __enter__(self) -> RunSession:
        self.llm._emit("wilson_run_started", self.record, run=self.record)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.record = attrs.evolve(self.record, ended_at=utcnow())
        self.llm._emit("wilson_run_finished", self.record, run=self.record, error=exc)

    async def __aenter__(self) -> RunSession:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- calls -------------------------------------------------------------

    def _prepare(self, messages: Any, tools: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        normalized = normalize_messages(messages)
        tool_list = [dict(t) for t in tools] if tools else []
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        return normalized, tool_list, sequence

    def _finish(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        params: dict[str, Any],
        sequence: int,
        started: float,
        created_at: str,
        response: ProviderResponse | None,
        error: BaseException | None,
    ) -> Reply | None:
        duration_ms = (time.perf_counter() - started) * 1000.0
        llm = self.llm
        if response is not None and not isinstance(response, ProviderResponse):
            error = TypeError(
                f"provider {llm.provider_name!r} returned {type(response).__name__}, "
                "not a ProviderResponse"
            )
            response = None
        common = dict(
            run_id=self.record.id,
            sequence_num=sequence,
            call_type=self.record.call_type,
            provider=llm.provider_name,
            messages=messages,
            tools=tools,
            params=params,
            duration_ms=duration_ms,
            created_at=created_at,
        )
        if response is None:
            interaction = Interaction(
                model=llm.model,
                status=STATUS_ERROR,
                error=f"{type(error).__name__}: {error}",
                **common,
            )
            llm._emit("wilson_capture_interaction", interaction, interaction=interaction)
            return None
        total = None
        if response.input_tokens is not None or response.output_tokens is not None:
            total = (response.input_tokens or 0) + (response.output_tokens or 0)
        interaction = Interaction(
            model=response.model or llm.model,
            response_content=response.content,
            tool_calls=response.tool_calls,
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            total_tokens=total,
            **common,
        )
        llm._emit("wilson_capture_interaction", interaction, interaction=interaction)
        if interaction.tool_calls:
            with self._lock:
                for call in interaction.tool_calls:
                    self._calls[call.id] = (interaction.id, call)
        return Reply(
            content=interaction.response_content,
            tool_calls=interaction.tool_calls,
            input_tokens=interaction.input_tokens,
            output_tokens=interaction.output_tokens,
            total_tokens=total,
            duration_ms=duration_ms,
            interaction_id=interaction.id,
            run_id=interaction.run_id,
            model=interaction.model,
            provider=interaction.provider,
        )

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
        normalized, tool_list, sequence = self._prepare(messages, tools)
        created_at = utcnow()
        started = time.perf_counter()
        try:
            response = self.llm.provider.chat(normalized, tool_list or None, params)
        except Exception as exc:
            self._finish(normalized, tool_list, params, sequence, started, created_at, None, exc)
            raise
        reply = self._finish(normalized, tool_list, params, sequence, started, created_at, response, None)
        if reply is None:
            raise TypeError(f"provider {self.llm.provider_name!r} returned {type(response).__name__}")
        return reply

    async def achat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> Reply:
        """Async variant of :meth:`chat`."""
        normalized, tool_list, sequence = self._prepare(messages, tools)
        created_at = utcnow()
        started = time.perf_counter()
        try:
            response = await self.llm.provider.achat(normalized, tool_list or None, params)
        except Exception as exc:
            self._finish(normalized, tool_list, params, sequence, started, created_at, None, exc)
            raise
        reply = self._finish(normalized, tool_list, params, sequence, started, created_at, response, None)
        if reply is None:
            raise TypeError(f"provider {self.llm.provider_name!r} returned {type(response).__name__}")
        return reply

    def record_tool_result(
        self,
        call: ToolCall | str,
        content: Any,
        *,
        is_error: bool = False,
        duration_ms: float | None = None,
    ) -> ToolResult:
        """Record what a tool call returned, linked to the interaction that asked for it.

        :param call: the :class:`ToolCall` from a reply, or its id.
        :param content: the result; non-strings are stored as JSON.
        """
        call_id = call if isinstance(call, str) else call.id
        with self._lock:
            interaction_id, known = self._calls.get(call_id, (None, None))
        if known is None and isinstance(call, ToolCall):
            known = call
        if known is None:
            raise KeyError(f"tool call {call_id!r} was not returned by a call in this run")
        if not isinstance(content, str):
            import json

            content = json.dumps(content, ensure_ascii=False, default=str)
        result = ToolResult(
            tool_call_id=call_id,
            name=known.name,
            arguments=dict(known.arguments),
            content=content,
            is_error=is_error,
            duration_ms=duration_ms,
            interaction_id=interaction_id,
        )
        self.llm._emit("wilson_capture_tool_result", result, tool_result=result)
        return result
