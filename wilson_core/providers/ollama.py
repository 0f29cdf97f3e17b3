"""``ollama``: a model served by Ollama, through its native ``/api/chat``.

    LLM("ollama:wilson-finance")                      # http://127.0.0.1:11434
    LLM("ollama:llama3.2", host="http://gpu-box:11434")

Streamed calls (``llm.stream``) read Ollama's native stream (one JSON object
per line); its last line (``"done": true``) carries the token counts.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from wilson_core.errors import ProviderError
from wilson_core.interfaces import Provider
from wilson_core.messages import tool_call_from_openai
from wilson_core.records import ProviderResponse
from wilson_core.streams import StreamCut, StreamEvent, StreamInfo, TextDelta, ToolCallDelta

DEFAULT_HOST = "http://127.0.0.1:11434"

#: request parameters that Ollama takes at the top level rather than in ``options``.
_TOP_LEVEL = {"format", "keep_alive", "think"}


def ollama_host(host: str | None = None) -> str:
    return (host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST).rstrip("/")


def to_ollama_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama wants ``tool_calls`` as ``{"function": {"name", "arguments": {dict}}}``."""
    result = []
    for message in messages:
        copy = {k: v for k, v in message.items() if k in ("role", "content", "tool_calls", "images", "tool_name")}
        if message.get("role") == "tool" and message.get("name"):
            copy["tool_name"] = message["name"]
        if copy.get("tool_calls"):
            copy["tool_calls"] = [
                {"function": {"name": c["function"]["name"], "arguments": c["function"].get("arguments") or {}}}
                for c in copy["tool_calls"]
            ]
        if copy.get("content") is None:
            copy["content"] = ""
        result.append(copy)
    return result


class OllamaProvider(Provider):
    def __init__(self, model: str, *, host: str | None = None, timeout: float = 300.0, **options: Any) -> None:
        super().__init__(model, **options)
        self.host = ollama_host(host)
        self.timeout = timeout

    def _body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": to_ollama_messages(messages), "stream": False}
        if tools:
            body["tools"] = tools
        options = {k: v for k, v in params.items() if k not in _TOP_LEVEL}
        if "max_tokens" in options:
            options["num_predict"] = options.pop("max_tokens")
        if options:
            body["options"] = options
        body.update({k: v for k, v in params.items() if k in _TOP_LEVEL})
        return body

    def _parse(self, response: Any) -> ProviderResponse:
        if response.status_code >= 400:
            raise ProviderError(f"Ollama at {self.host} answered HTTP {response.status_code}: {response.text[:500]}")
        try:
            data = response.json()
            message = data["message"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"unexpected /api/chat response ({exc}): {response.text[:500]}") from None
        return ProviderResponse(
            content=message.get("content"),
            tool_calls=tuple(tool_call_from_openai(c) for c in message.get("tool_calls") or ()),
            input_tokens=data.get("prompt_eval_count"),
            output_tokens=data.get("eval_count"),
            model=data.get("model") or self.model,
        )

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> ProviderResponse:
        import httpx

        try:
            response = httpx.post(f"{self.host}/api/chat", json=self._body(messages, tools, params), timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ProviderError(f"cannot reach Ollama at {self.host}: {exc}") from exc
        return self._parse(response)

    async def achat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> ProviderResponse:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(f"{self.host}/api/chat", json=self._body(messages, tools, params))
        except httpx.HTTPError as exc:
            raise ProviderError(f"cannot reach Ollama at {self.host}: {exc}") from exc
        return self._parse(response)

    # -- streaming -----------------------------------------------------------------------

    def _stream_body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> dict[str, Any]:
        body = self._body(messages, tools, params)
        body["stream"] = True
        return body

    def _http_error(self, status: int, text: str) -> ProviderError:
        return ProviderError(f"Ollama at {self.host} answered HTTP {status}: {text[:500]}")

    def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> Iterator[StreamEvent]:
        import httpx

        parser = _Lines(self.host)
        try:
            with httpx.stream("POST", f"{self.host}/api/chat", json=self._stream_body(messages, tools, params), timeout=self.timeout) as response:
                if response.status_code >= 400:
                    raise self._http_error(response.status_code, response.read().decode("utf-8", "replace"))
                parser.started = True
                for chunk in response.iter_bytes():
                    yield from parser.feed(chunk)
                yield from parser.end()
        except httpx.HTTPError as exc:
            raise parser.failure(exc) from exc

    async def astream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> AsyncIterator[StreamEvent]:
        import httpx

        parser = _Lines(self.host)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client, client.stream(
                "POST", f"{self.host}/api/chat", json=self._stream_body(messages, tools, params)
            ) as response:
                if response.status_code >= 400:
                    raise self._http_error(response.status_code, (await response.aread()).decode("utf-8", "replace"))
                parser.started = True
                async for chunk in response.aiter_bytes():
                    for event in parser.feed(chunk):
                        yield event
                for event in parser.end():
                    yield event
        except httpx.HTTPError as exc:
            raise parser.failure(exc) from exc


class _Lines:
    """Ollama's streamed ``/api/chat`` (one JSON object per line) to stream events."""

    def __init__(self, host: str) -> None:
        from wilson_core.protocols.common import NDJSONDecoder

        self.host = host
        self.decoder = NDJSONDecoder()
        self.started = False
        self.done = False
        self.calls = 0

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for line in self.decoder.feed(chunk):
            self._line(line, events)
        return events

    def end(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for line in self.decoder.flush():
            self._line(line, events)
        if not self.done:
            raise StreamCut(f"Ollama at {self.host} closed the stream before its last line")
        return events

    def _line(self, line: str, events: list[StreamEvent]) -> None:
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise ProviderError(f"Ollama at {self.host} sent a line that is not JSON: {line[:200]}") from None
        if not isinstance(value, dict):
            return
        if value.get("error"):
            raise ProviderError(f"Ollama at {self.host} sent an error in the stream: {value['error']}")
        message = value.get("message") if isinstance(value.get("message"), Mapping) else {}
        content = message.get("content")
        if isinstance(content, str) and content:
            events.append(TextDelta(content))
        for raw in message.get("tool_calls") or ():
            call = tool_call_from_openai(raw)
            arguments = call.raw_arguments
            if arguments is None:
                arguments = json.dumps(call.arguments, ensure_ascii=False) if call.arguments else ""
            events.append(ToolCallDelta(index=self.calls, id=call.id, name=call.name, arguments=arguments))
            self.calls += 1
        if value.get("done"):
            self.done = True
            events.append(
                StreamInfo(
                    input_tokens=value.get("prompt_eval_count"),
                    output_tokens=value.get("eval_count"),
                    model=value.get("model") or None,
                    finish_reason=value.get("done_reason"),
                )
            )

    def failure(self, exc: BaseException) -> ProviderError:
        if self.started:
            return StreamCut(f"the stream from Ollama at {self.host} broke: {type(exc).__name__}: {exc}")
        return ProviderError(f"cannot reach Ollama at {self.host}: {exc}")
