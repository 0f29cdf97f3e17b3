"""Stream events from a local model's text, token by token, tool calls included.

Local models write tool calls inline as ``<tool_call>{json}</tool_call>``.  While the
text streams, what could be the start of such a block is held back; when the model
stops, the calls are parsed (as :func:`wilson_core.messages.parse_tagged_tool_calls`
does for a whole reply) and come out as :class:`~wilson_core.streams.ToolCallDelta` s,
so a streamed reply assembles to the same text and calls as ``chat()`` gives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from .messages import parse_tagged_tool_calls
from .streams import StreamEvent, TextDelta, ToolCallDelta

OPEN = "<tool_call>"


class TaggedTextStream:
    """Feed text pieces in order (:meth:`feed`), then :meth:`end`; each gives the events to send."""

    def __init__(self) -> None:
        self.text = ""
        self.sent = 0  # characters of ``text`` already sent as text deltas
        self.held = False  # a tool-call block has started: no more text until the end

    def feed(self, piece: str) -> Iterator[StreamEvent]:
        if not piece:
            return
        self.text += piece
        if self.held:
            return
        found = self.text.find(OPEN, self.sent)
        if found >= 0:
            self.held = True
            safe = found
        else:
            safe = len(self.text) - _partial_open(self.text)
        # trailing whitespace waits too: before a tool call, chat() strips it
        safe = len(self.text[:safe].rstrip())
        if safe > self.sent:
            yield TextDelta(self.text[self.sent:safe])
            self.sent = safe

    def end(self) -> Iterator[StreamEvent]:
        """The rest: text not sent yet (as ``chat()`` would give it) and the tool calls."""
        content, calls = parse_tagged_tool_calls(self.text)
        if not calls:
            if len(self.text) > self.sent:
                yield TextDelta(self.text[self.sent:])
            self.sent = len(self.text)
            return
        sent = self.text[:self.sent]
        if content.startswith(sent) and len(content) > len(sent):
            yield TextDelta(content[len(sent):])
        for index, call in enumerate(calls):
            arguments = call.raw_arguments
            if arguments is None:
                arguments = json.dumps(call.arguments, ensure_ascii=False) if call.arguments else ""
            yield ToolCallDelta(index=index, id=call.id, name=call.name, arguments=arguments)


def _partial_open(text: str) -> int:
    """How many trailing characters of ``text`` could begin ``<tool_call>``."""
    for size in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-size:]):
            return size
    return 0
