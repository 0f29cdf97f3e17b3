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

Modules: :mod:`.llm` (the :class:`LLM` and its calls), :mod:`.session`
(``llm.run()``), :mod:`.streaming` (``stream()`` / ``astream()`` results and
their recording), :mod:`.reply` (the :class:`~wilson_core.records.Reply` of a
captured call).
"""

from __future__ import annotations

from .llm import LLM, RECENT_CALLS, parse_provider
from .reply import reply_for
from .session import RunSession
from .streaming import AsyncChatStream, ChatStream

__all__ = ["LLM", "RECENT_CALLS", "AsyncChatStream", "ChatStream", "RunSession", "parse_provider", "reply_for"]
