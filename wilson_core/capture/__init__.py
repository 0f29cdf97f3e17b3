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

The parts: :mod:`.emitting` (records to the sinks, isolated, failures
counted), :mod:`.runs` (:class:`CaptureRun`, tool results linked to their
calls), :mod:`.calls` (:class:`CallCapture`); this module holds the current
run and the one-step functions, and names everything above.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from wilson_core.records import STATUS_OK, Interaction, ToolCall

from .calls import STATUSES, CallCapture
from .emitting import FailureCounter, _internal_failure, call_isolated, capture_failures, emit
from .runs import RECENT_CALLS, RUN_CALLS, CaptureRun, _current

__all__ = [
    "KEYED_RUNS", "RECENT_CALLS", "RUN_CALLS", "STATUSES", "CallCapture", "CaptureRun", "FailureCounter",
    "call_isolated", "capture_failures", "current_run", "emit", "record_call", "run", "run_for_id",
    "run_or_standalone", "start_call",
]

#: how many runs named by an explicit id (the proxy's ``X-Wilson-Run-Id``) are kept.
KEYED_RUNS = 10_000

_lock = threading.Lock()
_keyed: OrderedDict[tuple[str | None, str], CaptureRun] = OrderedDict()


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
