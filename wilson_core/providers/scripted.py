"""``scripted``: deterministic replies, for demos and tests (it calls no model).

    LLM("scripted:demo", script=["first reply", {"content": None, "tool_calls": [...]}])
    LLM("scripted:demo", script=lambda messages, tools: "reply")
    LLM("scripted:demo", script="replies.jsonl")    # one reply object per line

A reply is a string, a dict with ``content`` / ``tool_calls`` (OpenAI or
flat shape) / ``error`` (raise that message), or a :class:`ProviderResponse`.
A list is used in order and cycles when ``cycle=True`` (else running out is
an error).  Token counts are whitespace-separated words.

Streamed (``llm.stream``), a reply comes in pieces of ``chunk_chars``
characters (tool call arguments too), ``chunk_delay_s`` apart.
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from wilson_core.errors import ProviderError
from wilson_core.interfaces import Provider
from wilson_core.messages import tool_call_from_openai
from wilson_core.records import ProviderResponse
from wilson_core.streams import StreamEvent, StreamInfo, TextDelta, ToolCallDelta, response_events


def _words(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return _count_words(value)
    return len(json.dumps(value, default=str).split())


@functools.lru_cache(maxsize=512)
def _count_words(text: str) -> int:
    """Cached: an app sends the same long system prompt on every call."""
    return len(text.split())


class ScriptedProvider(Provider):
    """Replies from a script: a list, a JSONL file or a function."""

    def __init__(
        self,
        model: str,
        *,
        script: Any = None,
        cycle: bool = False,
        latency_s: float = 0.0,
        chunk_chars: int = 4,
        chunk_delay_s: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        if script is None:
            script = ["OK"]
        self.latency_s = latency_s
        self.chunk_chars = max(1, int(chunk_chars))
        self.chunk_delay_s = chunk_delay_s
        self._function: Callable[..., Any] | None = None
        self._replies: Iterator[Any] | None = None
        self._lock = threading.Lock()
        if callable(script):
            self._function = script
        else:
            if isinstance(script, (str, Path)):
                script = _read_script(Path(script))
            replies = list(script)
            if not replies:
                raise ProviderError("scripted provider: the script has no replies")
            self._replies = itertools.cycle(replies) if cycle else iter(replies)

    def chat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> ProviderResponse:
        if self.latency_s:
            import time

            time.sleep(self.latency_s)
        if self._function is not None:
            reply = self._function(messages, tools)
        else:
            with self._lock:
                try:
                    reply = next(self._replies)  # type: ignore[arg-type]
                except StopIteration:
                    raise ProviderError("scripted provider: the script ran out of replies") from None
        return self._response(reply, messages)

    def _pieces(self, response: ProviderResponse) -> Iterator[StreamEvent]:
        size = self.chunk_chars
        text = response.content or ""
        for start in range(0, len(text), size):
            yield TextDelta(text[start : start + size])
        for index, event in enumerate(e for e in response_events(response) if isinstance(e, ToolCallDelta)):
            arguments = event.arguments
            yield ToolCallDelta(index=index, id=event.id, name=event.name, arguments=arguments[:size])
            for start in range(size, len(arguments), size):
                yield ToolCallDelta(index=index, arguments=arguments[start : start + size])
        yield StreamInfo(input_tokens=response.input_tokens, output_tokens=response.output_tokens, model=response.model)

    def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> Iterator[StreamEvent]:
        import time

        for event in self._pieces(self.chat(messages, tools, params)):
            if self.chunk_delay_s and not isinstance(event, StreamInfo):
                time.sleep(self.chunk_delay_s)
            yield event

    async def astream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: Mapping[str, Any],
    ) -> AsyncIterator[StreamEvent]:
        import asyncio

        response = await self.achat(messages, tools, params) if self.latency_s else self.chat(messages, tools, params)
        for event in self._pieces(response):
            if self.chunk_delay_s and not isinstance(event, StreamInfo):
                await asyncio.sleep(self.chunk_delay_s)
            yield event

    def _response(self, reply: Any, messages: list[dict[str, Any]]) -> ProviderResponse:
        input_tokens = sum(_words(m.get("content")) for m in messages)
        if isinstance(reply, ProviderResponse):
            return reply
        if isinstance(reply, str):
            return ProviderResponse(
                content=reply, input_tokens=input_tokens, output_tokens=_words(reply), model=self.model
            )
        if isinstance(reply, Mapping):
            if reply.get("error"):
                raise ProviderError(str(reply["error"]))
            calls = tuple(tool_call_from_openai(c) for c in reply.get("tool_calls") or ())
            content = reply.get("content")
            return ProviderResponse(
                content=content,
                tool_calls=calls,
                input_tokens=input_tokens,
                output_tokens=_words(content) + sum(_words(c.arguments) for c in calls),
                model=self.model,
            )
        raise ProviderError(f"scripted provider: a reply must be text or an object, got {reply!r}")


def _read_script(path: Path) -> list[Any]:
    if not path.exists():
        raise ProviderError(f"scripted provider: no script file at {path}")
    replies = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                replies.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ProviderError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return replies
