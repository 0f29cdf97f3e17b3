"""Capture without the facade: runs, one finished call recorded from its parts, sink isolation.

The facade (:mod:`wilson_core.facade`), the SDK wrappers and the recording
proxy all record through this module::

    with wilson_core.run(call_type="agent", metadata={"user": "u1"}):
        ...  # every captured call in here shares one run, sequence 1, 2, 3...

    call = capture.start_call()            # when the request starts
    ...                                    # the call happens
    call.first_token()                     # (streams) when the first token arrives
    call.finish(provider="openai", model="gpt-4o-mini", messages=messages,
                content=text, tool_calls=calls, input_tokens=12, output_tokens=7)

or in one step, for a call that already ended::

    capture.record_call(provider=..., model=..., messages=..., content=..., duration_ms=...)

A request carrying ``role: "tool"`` messages that answer tool calls returned
earlier in the same run records those results (once each), linked to the
interaction and tool call that caused them.

Capture never breaks the app: every sink hook implementation is called on
its own; one that raises is counted (:func:`capture_failures`), reported
through ``wilson_capture_failed`` and skipped.  :meth:`CallCapture.finish`
and :func:`record_call` never raise.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any

import attrs

from . import plugins
from .messages import tool_call_from_openai
from .records import (
    STATUS_ERROR,
    STATUS_INCOMPLETE,
    STATUS_OK,
    Interaction,
    Run,
    ToolCall,
    ToolResult,
    utcnow,
)

#: how many runs named by an explicit id (the proxy's ``X-Wilson-Run-Id``) are kept.
KEYED_RUNS = 10_000
#: how many tool calls of standalone calls are remembered for linking their results.
RECENT_CALLS = 4096
#: how many tool calls one run remembers for linking their results (the oldest are forgotten).
RUN_CALLS = 1024

STATUSES = (STATUS_OK, STATUS_ERROR, STATUS_INCOMPLETE)

log = logging.getLogger("wilson.capture")

_current: ContextVar[CaptureRun | None] = ContextVar("wilson_run", default=None)
_lock = threading.Lock()
_failures = 0
_keyed: OrderedDict[tuple[str | None, str], CaptureRun] = OrderedDict()
#: tool call id -> (the standalone run whose interaction returned it, that call's database).
_standalone_calls: OrderedDict[str, tuple[CaptureRun, str | None]] = OrderedDict()

#: called with no arguments after a sink failure (e.g. the facade's per-LLM counter).
FailureCounter = Callable[[], None]


# -- sink hooks, isolated --------------------------------------------------------------


def call_isolated(hook_name: str, failed: Callable[[str, BaseException], None], **kwargs: Any) -> None:
    """Call every implementation of a broadcast hook on its own; report, never raise."""
    caller = getattr(plugins.hook(), hook_name)
    for impl in caller.get_hookimpls():
        try:
            impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception as exc:
            failed(impl.plugin_name, exc)


def capture_failures() -> int:
    """How many sink failures this process has had (all capture paths together)."""
    return _failures


def _reporter(record: Any, db_path: str | None, count: FailureCounter | None) -> Callable[[str, BaseException], None]:
    def report(sink: str, error: BaseException) -> None:
        global _failures
        with _lock:
            _failures += 1
        if count is not None:
            count()
        log.warning("capture sink %r failed: %s: %s", sink, type(error).__name__, error)
        call_isolated(
            "wilson_capture_failed", lambda *_: None, record=record, sink=sink, error=error, db_path=db_path
        )

    return report


def emit(hook_name: str, record: Any, *, db_path: str | None, count: FailureCounter | None = None, **kwargs: Any) -> None:
    """Send ``record`` to every implementation of ``hook_name`` (``wilson_capture_interaction``,
    ``wilson_capture_tool_result``, ``wilson_run_started``, ``wilson_run_finished``).

    A failing implementation is counted (and ``count`` called), warned about,
    reported through ``wilson_capture_failed`` and skipped; nothing is raised.
    """
    call_isolated(hook_name, _reporter(record, db_path, count), db_path=db_path, **kwargs)


def _internal_failure(what: str, error: BaseException, count: FailureCounter | None = None) -> None:
    """A failure of the capture code itself (not a sink): counted and warned, never raised."""
    global _failures
    with _lock:
        _failures += 1
    if count is not None:
        count()
    log.warning("capture failed (%s): %s: %s", what, type(error).__name__, error)


# -- runs ------------------------------------------------------------------------------


class CaptureRun:
    """A run: calls recorded in it share its id and get sequence numbers 1, 2, 3...

    Use ``with wilson_core.run(...) as r`` (or ``async with``) to make it the
    current run of the context; the facade's ``llm.run()`` is one too.
    Thread-safe: several threads (or the proxy's requests) may record at once.
    """

    def __init__(
        self,
        record: Run | None = None,
        *,
        call_type: str = "agent",
        metadata: Mapping[str, Any] | None = None,
        db: str | os.PathLike[str] | None = None,
        id: str | None = None,
        standalone: bool = False,
    ) -> None:
        if record is None:
            fields: dict[str, Any] = {"call_type": call_type, "metadata": dict(metadata or {})}
            if id is not None:
                fields["id"] = str(id)
            record = Run(**fields)
        self.record = record
        self.db_path: str | None = os.fspath(db) if db is not None else None
        #: whether every call of the run goes to :attr:`db_path` (else each call's own database).
        self.own_db = db is not None
        self.standalone = standalone
        self._started = False
        #: the databases this run's calls went to (when it has no database of its own).
        self._dbs: set[str | None] = set()
        self._sequence = 0
        self._lock = threading.Lock()
        #: tool call id -> (interaction id, the call), for calls returned in this run.
        self._calls: dict[str, tuple[str | None, ToolCall]] = {}
        #: tool call id -> the database its interaction went to (its result goes there too).
        self._call_dbs: dict[str, str | None] = {}
        #: tool call ids whose result is recorded.
        self._answered: set[str] = set()
        #: how many of :attr:`_calls` have no recorded result yet (0: no need to look at messages).
        self._waiting = 0
        self._tokens: list[Token[CaptureRun | None]] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, call_type={self.call_type!r})"

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def call_type(self) -> str:
        return self.record.call_type

    @property
    def metadata(self) -> dict[str, Any]:
        return self.record.metadata

    # -- how records leave (the facade overrides these) ----------------------------------

    @property
    def capturing(self) -> bool:
        return True

    def _count_failure(self) -> None:
        """Called after each sink failure of this run's records (the facade counts per LLM)."""

    def _db_for(self, db: str | None) -> str | None:
        """The database a call goes to: the run's when it names one, else the call's."""
        return self.db_path if self.own_db else db

    def emit(
        self,
        hook_name: str,
        record: Any,
        *,
        db_path: str | None = None,
        count: FailureCounter | None = None,
        **kwargs: Any,
    ) -> None:
        """Send ``record`` to the sinks (isolated, see :func:`emit`); ``count`` also counts failures."""
        if not self.capturing:
            return
        own = self._count_failure
        if count is not None:
            extra = count

            def both() -> None:
                own()
                extra()

            own = both
        emit(hook_name, record, db_path=self._db_for(db_path), count=own, **kwargs)

    # -- lifecycle -------------------------------------------------------------------------

    def next_sequence(self) -> int:
        """Reserve the next sequence number (call it when the request starts)."""
        with self._lock:
            self._sequence += 1
            return self._sequence

    def start(self) -> None:
        """Record that the run started (``with`` does this).

        A run without a database of its own is recorded in each database its
        calls go to, when the first call goes there.
        """
        self._started = True
        if self.own_db:
            self.emit("wilson_run_started", self.record, run=self.record)

    def _note_db(self, db_path: str | None) -> None:
        """A call of this run goes to ``db_path``: record the run there first."""
        if self.own_db or not self._started or db_path in self._dbs:
            return
        with self._lock:
            if db_path in self._dbs:
                return
            self._dbs.add(db_path)
        self.emit("wilson_run_started", self.record, db_path=db_path, run=self.record)

    def end(self, error: BaseException | None = None) -> None:
        """Record that the run ended (``with`` does this)."""
        self.record = attrs.evolve(self.record, ended_at=utcnow())
        with self._lock:
            targets = [self.db_path] if self.own_db else sorted(self._dbs, key=str)
        for db_path in targets:
            self.emit("wilson_run_finished", self.record, db_path=db_path, run=self.record, error=error)

    def __enter__(self) -> CaptureRun:
        self.start()
        self._tokens.append(_current.set(self))
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._tokens:
            token = self._tokens.pop()
            try:
                _current.reset(token)
            except ValueError:  # exited in another context than it was entered in
                _current.set(None)
        self.end(exc)

    async def __aenter__(self) -> CaptureRun:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- calls -------------------------------------------------------------------------

    def start_call(self, *, call_type: str | None = None, db: str | os.PathLike[str] | None = None) -> CallCapture:
        """Begin capturing one call in this run: its sequence number, start time and clock."""
        return CallCapture(self, call_type=call_type, db=db)

    def record_call(self, **parts: Any) -> Interaction | None:
        """Record one finished call in this run (see :func:`record_call`); never raises."""
        duration_ms = parts.pop("duration_ms", None)
        created_at = parts.pop("created_at", None)
        call_type = parts.pop("call_type", None)
        db = parts.pop("db", None)
        try:
            call = CallCapture(self, call_type=call_type, db=db, created_at=created_at)
        except Exception as exc:
            _internal_failure("starting a call", exc, self._count_failure)
            return None
        return call.finish(duration_ms=duration_ms, **parts)

    def remember(self, interaction: Interaction, db_path: str | None = None) -> None:
        """Remember the tool calls ``interaction`` returned, for linking their results."""
        if not interaction.tool_calls or interaction.status == STATUS_ERROR:
            return
        with self._lock:
            for call in interaction.tool_calls:
                if call.id not in self._calls and call.id not in self._answered:
                    self._waiting += 1
                self._calls[call.id] = (interaction.id, call)
                self._call_dbs[call.id] = db_path
            while len(self._calls) > RUN_CALLS:  # a long run: forget its oldest tool calls
                old = next(iter(self._calls))
                del self._calls[old]
                self._call_dbs.pop(old, None)
                if old in self._answered:
                    self._answered.discard(old)
                else:
                    self._waiting -= 1
        if self.standalone:
            with _lock:
                for call in interaction.tool_calls:
                    _standalone_calls[call.id] = (self, self._db_for(db_path))
                    _standalone_calls.move_to_end(call.id)
                while len(_standalone_calls) > RECENT_CALLS:
                    _standalone_calls.popitem(last=False)

    def _answer(self, call_id: str) -> None:
        """Mark ``call_id`` answered (hold :attr:`_lock`)."""
        if call_id not in self._answered:
            self._answered.add(call_id)
            if call_id in self._calls:
                self._waiting -= 1

    def _known_call(self, call_id: str) -> tuple[str | None, ToolCall | None]:
        with self._lock:
            return self._calls.get(call_id, (None, None))

    def record_tool_result(
        self,
        call: ToolCall | str,
        content: Any,
        *,
        is_error: bool = False,
        duration_ms: float | None = None,
        db: str | os.PathLike[str] | None = None,
        count: FailureCounter | None = None,
    ) -> ToolResult:
        """Record what a tool call returned, linked to the interaction that asked for it.

        :param call: the :class:`ToolCall` from a reply, or its id.
        :param content: the result; non-strings are stored as JSON.
        :raises KeyError: ``call`` is an id this run never returned.
        """
        call_id = call if isinstance(call, str) else call.id
        interaction_id, known = self._known_call(call_id)
        if known is None and isinstance(call, ToolCall):
            known = call
        if known is None:
            raise KeyError(f"tool call {call_id!r} was not returned by a call in this run")
        with self._lock:
            self._answer(call_id)
        if db is None:
            db = self._call_dbs.get(call_id)
        return self._emit_result(known, interaction_id, content, is_error, duration_ms, db, count)

    def _emit_result(
        self,
        call: ToolCall,
        interaction_id: str | None,
        content: Any,
        is_error: bool,
        duration_ms: float | None,
        db: str | os.PathLike[str] | None,
        count: FailureCounter | None = None,
    ) -> ToolResult:
        result = ToolResult(
            tool_call_id=call.id,
            name=call.name,
            arguments=dict(call.arguments),
            content=_result_text(content),
            is_error=is_error,
            duration_ms=duration_ms,
            interaction_id=interaction_id,
        )
        self.emit(
            "wilson_capture_tool_result",
            result,
            db_path=os.fspath(db) if db is not None else None,
            count=count,
            tool_result=result,
        )
        return result

    def record_tool_messages(
        self,
        messages: Iterable[Mapping[str, Any]],
        db: str | os.PathLike[str] | None = None,
        count: FailureCounter | None = None,
    ) -> list[ToolResult]:
        """Record the ``role: "tool"`` messages that answer this run's earlier tool calls.

        Each tool call's result is recorded once: sending the same history
        again records nothing new.  Messages answering unknown calls are skipped.
        """
        if self.standalone:
            return _record_standalone_answers(messages, self._db_for(os.fspath(db) if db else None), count)
        with self._lock:
            if self._waiting <= 0:
                return []  # nothing is waiting for a result: no need to look
        results = []
        for message in messages:
            if message.get("role") != "tool":
                continue
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                continue
            with self._lock:
                interaction_id, call = self._calls.get(call_id, (None, None))
                if call is None or call_id in self._answered:
                    continue
                self._answer(call_id)
                call_db = self._call_dbs.get(call_id, db)
            results.append(self._emit_result(call, interaction_id, message.get("content"), False, None, call_db, count))
        return results


def _record_standalone_answers(
    messages: Iterable[Mapping[str, Any]], db_path: str | None, count: FailureCounter | None
) -> list[ToolResult]:
    """Tool results answering tool calls returned by recent standalone calls (same database)."""
    if not _standalone_calls:
        return []
    results = []
    for message in messages:
        if message.get("role") != "tool":
            continue
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            continue
        with _lock:
            found = _standalone_calls.get(call_id)
        if found is None or found[1] != db_path:
            continue
        owner = found[0]
        with owner._lock:
            interaction_id, call = owner._calls.get(call_id, (None, None))
            if call is None or call_id in owner._answered:
                continue
            owner._answer(call_id)
        results.append(
            owner._emit_result(call, interaction_id, message.get("content"), False, None, db_path, count)
        )
    return results


def _result_text(content: Any) -> str:
    """A tool result as text: strings as they are, text parts joined, anything else as JSON."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list) and all(isinstance(p, Mapping) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    return json.dumps(content, ensure_ascii=False, default=str)


class CallCapture:
    """One call being captured: run, sequence number, start time, time to first token.

    Make one when the request starts (:func:`start_call`); call
    :meth:`first_token` when the first token arrives (streams) and
    :meth:`finish` once when the call ends.  :meth:`finish` records the call
    at most once (later calls return ``None``) and never raises.
    """

    __slots__ = ("_done", "call_type", "count", "created_at", "db_path", "run", "sequence", "started", "ttft_ms")

    def __init__(
        self,
        run: CaptureRun,
        *,
        call_type: str | None = None,
        db: str | os.PathLike[str] | None = None,
        created_at: str | None = None,
        count: FailureCounter | None = None,
    ) -> None:
        self.run = run
        #: also called after each sink failure of this call (the facade counts per LLM).
        self.count = count
        self.call_type = call_type or run.call_type
        self.db_path = run._db_for(os.fspath(db) if db is not None else None)
        self.sequence = run.next_sequence()
        self.created_at = created_at or utcnow()
        self.started = time.perf_counter()
        self.ttft_ms: float | None = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def first_token(self) -> None:
        """Note that the first token arrived now (only the first call counts)."""
        if self.ttft_ms is None:
            self.ttft_ms = self.elapsed_ms()

    def interaction(
        self,
        *,
        provider: str,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        content: str | None = None,
        tool_calls: Sequence[ToolCall | Mapping[str, Any]] = (),
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        total_tokens: int | None = None,
        duration_ms: float | None = None,
        ttft_ms: float | None = None,
        status: str = STATUS_OK,
        error: str | BaseException | None = None,
    ) -> Interaction:
        """The :class:`Interaction` for this call (raises on bad parts; :meth:`finish` does not)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        calls = tool_calls if type(tool_calls) is tuple and all(type(c) is ToolCall for c in tool_calls) else tuple(
            c if isinstance(c, ToolCall) else tool_call_from_openai(c) for c in tool_calls
        )
        if total_tokens is None and (input_tokens is not None or output_tokens is not None):
            total_tokens = (input_tokens or 0) + (output_tokens or 0)
        return Interaction(
            run_id=self.run.id,
            sequence_num=self.sequence,
            call_type=self.call_type,
            provider=provider,
            model=model,
            messages=messages,
            response_content=content,
            tool_calls=calls,
            tools=tools or (),
            params=params or {},
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=total_tokens,
            duration_ms=self.elapsed_ms() if duration_ms is None else float(duration_ms),
            ttft_ms=self.ttft_ms if ttft_ms is None else float(ttft_ms),
            status=status,
            error=error,
            created_at=self.created_at,
        )

    def record(self, interaction: Interaction) -> Interaction | None:
        """Emit a built interaction (and the tool results its request carries), once."""
        with self.run._lock:
            if self._done:
                return None
            self._done = True
        run = self.run
        if run.capturing:
            run._note_db(self.db_path)
            run.record_tool_messages(interaction.messages, self.db_path, self.count)
        run.emit(
            "wilson_capture_interaction", interaction, db_path=self.db_path, count=self.count, interaction=interaction
        )
        run.remember(interaction, self.db_path)
        return interaction

    def finish(self, **parts: Any) -> Interaction | None:
        """Record the finished call from its parts (as :meth:`interaction` takes them).

        Returns the recorded interaction, or ``None`` when it was already
        recorded or could not be built (counted and warned about, never raised).
        """
        if self._done:
            return None
        try:
            return self.record(self.interaction(**parts))
        except Exception as exc:
            _internal_failure("recording a call", exc, self.count or self.run._count_failure)
            return None


# -- the current run -----------------------------------------------------------------


def run(
    call_type: str = "agent",
    metadata: Mapping[str, Any] | None = None,
    db: str | os.PathLike[str] | None = None,
    *,
    id: str | None = None,
) -> CaptureRun:
    """A run to use as ``with wilson_core.run(...) as r:`` (or ``async with``).

    Captured calls made inside the block (wrapped SDK calls, proxy-less
    capture, ``llm.chat``) share its run id and get sequence numbers 1, 2, 3...
    :param db: where its calls are stored (default: each call's own database).
    :param id: an explicit run id (default: a fresh one).
    """
    return CaptureRun(call_type=call_type, metadata=metadata, db=db, id=id)


def current_run() -> CaptureRun | None:
    """The run of the enclosing ``with wilson_core.run()`` / ``llm.run()``, or ``None``."""
    return _current.get()


def run_or_standalone(call_type: str = "agent", db: str | os.PathLike[str] | None = None) -> CaptureRun:
    """The current run, or a new standalone run for one call."""
    current = _current.get()
    if current is not None:
        return current
    return CaptureRun(call_type=call_type, db=db, standalone=True)


def run_for_id(
    run_id: str,
    *,
    call_type: str = "agent",
    metadata: Mapping[str, Any] | None = None,
    db: str | os.PathLike[str] | None = None,
) -> CaptureRun:
    """The run named ``run_id`` (the proxy's ``X-Wilson-Run-Id``), made on first use.

    The last :data:`KEYED_RUNS` are kept (least recently used dropped first);
    the first use records the run with ``call_type`` and ``metadata``.
    """
    key = (os.fspath(db) if db is not None else None, run_id)
    with _lock:
        found = _keyed.get(key)
        if found is not None:
            _keyed.move_to_end(key)
            return found
        made = CaptureRun(call_type=call_type, metadata=metadata, db=db, id=run_id)
        _keyed[key] = made
        while len(_keyed) > KEYED_RUNS:
            _keyed.popitem(last=False)
    made.start()
    return made


def start_call(
    *,
    call_type: str | None = None,
    db: str | os.PathLike[str] | None = None,
    run: CaptureRun | None = None,
) -> CallCapture:
    """Begin capturing one call, in ``run`` or the current run (a standalone one when none).

    Call it when the request starts, so the sequence number and the clock
    are right; then :meth:`CallCapture.finish` when it ends.
    """
    owner = run if run is not None else run_or_standalone(call_type or "agent", None)
    return CallCapture(owner, call_type=call_type, db=db)


def record_call(
    *,
    provider: str,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    content: str | None = None,
    tool_calls: Sequence[ToolCall | Mapping[str, Any]] = (),
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    total_tokens: int | None = None,
    duration_ms: float | None = None,
    ttft_ms: float | None = None,
    status: str = STATUS_OK,
    error: str | BaseException | None = None,
    created_at: str | None = None,
    call_type: str | None = None,
    db: str | os.PathLike[str] | None = None,
    run: CaptureRun | None = None,
) -> Interaction | None:
    """Record one finished call from its parts; never raises.

    :param messages: the request's messages in Wilson's shape (tool call
        arguments as dicts: :func:`wilson_core.messages.normalize_messages`).
    :param tool_calls: :class:`ToolCall` records or OpenAI-shaped dicts.
    :param status: ``ok``, ``error`` or ``incomplete``.
    :param run: the run (default: the current one, else a standalone run).
    :return: the recorded interaction, or ``None`` when it could not be built.
    """
    try:
        owner = run if run is not None else run_or_standalone(call_type or "agent", None)
    except Exception as exc:
        _internal_failure("finding the run", exc)
        return None
    return owner.record_call(
        provider=provider,
        model=model,
        messages=messages,
        tools=tools,
        params=params,
        content=content,
        tool_calls=tool_calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total_tokens,
        duration_ms=duration_ms,
        ttft_ms=ttft_ms,
        status=status,
        error=error,
        created_at=created_at,
        call_type=call_type,
        db=db,
    )
