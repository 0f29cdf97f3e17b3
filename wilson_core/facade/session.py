"""``llm.run()``: a run of facade calls that share a run id and sequence numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wilson_core.capture import CaptureRun
from wilson_core.records import Reply, Run

if TYPE_CHECKING:
    from .llm import LLM
    from .streaming import AsyncChatStream, ChatStream


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
