"""One call being captured: its run, sequence number, clock and time to first token, recorded once."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wilson_core.messages import tool_call_from_openai
from wilson_core.records import (
    STATUS_ERROR,
    STATUS_INCOMPLETE,
    STATUS_OK,
    Interaction,
    ToolCall,
    utcnow,
)

from .emitting import FailureCounter, _internal_failure

if TYPE_CHECKING:
    from .runs import CaptureRun

STATUSES = (STATUS_OK, STATUS_ERROR, STATUS_INCOMPLETE)


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
