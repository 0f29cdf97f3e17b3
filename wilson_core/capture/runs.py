"""Runs: calls recorded in one share its id and get sequence numbers; tool results linked to their calls."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from typing import Any

import attrs

from wilson_core.records import STATUS_ERROR, Interaction, Run, ToolCall, ToolResult, utcnow

from .calls import CallCapture
from .emitting import FailureCounter, _internal_failure, emit

#: how many tool calls of standalone calls are remembered for linking their results.
RECENT_CALLS = 4096
#: how many tool calls one run remembers for linking their results (the oldest are forgotten).
RUN_CALLS = 1024

_current: ContextVar[CaptureRun | None] = ContextVar("wilson_run", default=None)
_lock = threading.Lock()
#: tool call id -> (the standalone run whose interaction returned it, that call's database).
_standalone_calls: OrderedDict[str, tuple[CaptureRun, str | None]] = OrderedDict()


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
