"""``openai``: any OpenAI-compatible chat-completions endpoint, tools included.

    LLM("openai:gpt-4o-mini")                                   # $OPENAI_API_KEY
    LLM("openai:qwen2.5", base_url="http://localhost:8000/v1", api_key="none")

Streamed calls (``llm.stream``) read server-sent events and ask for the usage
with ``stream_options: {"include_usage": true}`` (``stream_usage=False`` turns
that off; a server that refuses the option is asked again without it).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from wilson_core.errors import ProviderError
from wilson_core.interfaces import Provider
from wilson_core.messages import to_openai_messages, tool_call_from_openai
from wilson_core.records import ProviderResponse
from wilson_core.streams import StreamCut, StreamEvent, StreamInfo, TextDelta, ToolCallDelta


class OpenAIProvider(Provider):
    """Chat completions over HTTP (``POST {base_url}/chat/completions``)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        stream_usage: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        self.stream_usage = stream_usage
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.timeout = timeout
        self._client: Any = None
        self._async_client: Any = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(messages)}
        if tools:
            body["tools"] = tools
        body.update(params)
        return body

    def _parse(self, response: Any) -> ProviderResponse:
        if response.status_code >= 400:
            raise ProviderError(
                f"{self.base_url}/chat/completions answered HTTP {response.status_code}: {response.text[:500]}"
            )
        try:
            data = response.json()
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ProviderError(f"unexpected chat-completions response ({exc}): {response.text[:500]}") from None
        usage = data.get("usage") or {}
        return ProviderResponse(
            content=message.get("content"),
            tool_calls=tuple(tool_call_from_openai(c) for c in message.get("tool_calls") or ()),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            model=data.get("model") or self.model,
        )

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> ProviderResponse:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)
        try:
            response = self._client.post(
                f"{self.base_url}/chat/completions", json=self._body(messages, tools, params), headers=self._headers()
            )
        except httpx.HTTPError as exc:
            raise ProviderError(f"cannot reach {self.base_url}: {exc}") from exc
        return self._parse(response)

    async def achat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> ProviderResponse:
        import asyncio

        import httpx

        # an AsyncClient belongs to one event loop: keep one per loop
        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_client[0] is not loop:
            self._async_client = (loop, httpx.AsyncClient(timeout=self.timeout))
        try:
            response = await self._async_client[1].post(
                f"{self.base_url}/chat/completions", json=self._body(messages, tools, params), headers=self._headers()
            )
        except httpx.HTTPError as exc:
            raise ProviderError(f"cannot reach {self.base_url}: {exc}") from exc
        return self._parse(response)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- streaming -----------------------------------------------------------------------

    def _stream_body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> dict[str, Any]:
        body = self._body(messages, tools, params)
        body["stream"] = True
        if self.stream_usage and "stream_options" not in body:
            body["stream_options"] = {"include_usage": True}
        return body

    def _refused_usage(self, status: int, text: str, body: dict[str, Any], params: Mapping[str, Any]) -> bool:
        """A server that does not know ``stream_options``: drop it and ask again (once)."""
        if status == 400 and "stream_options" in text and "stream_options" in body and "stream_options" not in params:
            del body["stream_options"]
            return True
        return False

    def _http_error(self, status: int, text: str) -> ProviderError:
        return ProviderError(f"{self.base_url}/chat/completions answered HTTP {status}: {text[:500]}")

    def stream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> Iterator[StreamEvent]:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)
        body = self._stream_body(messages, tools, params)
        url = f"{self.base_url}/chat/completions"
        for _attempt in range(2):
            parser = _SSEChunks(url)
            try:
                with self._client.stream("POST", url, json=body, headers=self._headers()) as response:
                    if response.status_code >= 400:
                        text = response.read().decode("utf-8", "replace")
                        if self._refused_usage(response.status_code, text, body, params):
                            continue
                        raise self._http_error(response.status_code, text)
                    parser.started = True
                    for chunk in response.iter_bytes():
                        yield from parser.feed(chunk)
                    parser.end()
                    return
            except httpx.HTTPError as exc:
                raise parser.failure(exc) from exc

    async def astream(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: Mapping[str, Any]) -> AsyncIterator[StreamEvent]:
        import asyncio

        import httpx

        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_client[0] is not loop:
            self._async_client = (loop, httpx.AsyncClient(timeout=self.timeout))
        client = self._async_client[1]
        body = self._stream_body(messages, tools, params)
        url = f"{self.base_url}/chat/completions"
        for _attempt in range(2):
            parser = _SSEChunks(url)
            try:
                async with client.stream("POST", url, json=body, headers=self._headers()) as response:
                    if response.status_code >= 400:
                        text = (await response.aread()).decode("utf-8", "replace")
                        if self._refused_usage(response.status_code, text, body, params):
                            continue
                        raise self._http_error(response.status_code, text)
                    parser.started = True
                    async for chunk in response.aiter_bytes():
                        for event in parser.feed(chunk):
                            yield event
                    parser.end()
                    return
            except httpx.HTTPError as exc:
                raise parser.failure(exc) from exc


class _SSEChunks:
    """Chat-completion chunks (server-sent events) to stream events, for choice 0."""

    def __init__(self, url: str) -> None:
        from wilson_core.protocols.common import SSEDecoder

        self.url = url
        self.decoder = SSEDecoder()
        self.started = False
        self.done = False
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.positions: dict[str, int] = {}

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for sse in self.decoder.feed(chunk):
            data = sse.data.strip()
            if data == "[DONE]":
                self.done = True
                continue
            try:
                value = json.loads(data)
            except (json.JSONDecodeError, RecursionError):
                continue  # a keep-alive or a line that is not JSON: nothing to show
            if not isinstance(value, dict):
                continue
            if value.get("error") or sse.event == "error":
                from wilson_core.protocols.common import error_message

                raise ProviderError(f"{self.url} sent an error in the stream: {error_message(value) or data[:500]}")
            self._chunk(value, events)
        return events

    def _chunk(self, value: dict[str, Any], events: list[StreamEvent]) -> None:
        info: dict[str, Any] = {}
        model = value.get("model")
        if isinstance(model, str) and model and model != self.model:
            self.model = info["model"] = model
        for choice in value.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) not in (0, None):
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), Mapping) else {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(TextDelta(content))
            for position, fragment in enumerate(delta.get("tool_calls") or ()):
                if isinstance(fragment, Mapping):
                    events.append(self._tool_fragment(fragment, position))
            if choice.get("finish_reason"):
                self.finish_reason = info["finish_reason"] = choice["finish_reason"]
        usage = value.get("usage")
        if isinstance(usage, Mapping):
            info["input_tokens"] = usage.get("prompt_tokens")
            info["output_tokens"] = usage.get("completion_tokens")
        if info:
            events.append(StreamInfo(**info))

    def _tool_fragment(self, fragment: Mapping[str, Any], position: int) -> ToolCallDelta:
        call_id = fragment.get("id") if isinstance(fragment.get("id"), str) and fragment.get("id") else None
        index = fragment.get("index")
        if not isinstance(index, int):  # servers that send whole calls without an index
            index = self.positions.get(call_id, len(self.positions)) if call_id else position
        if call_id:
            self.positions.setdefault(call_id, index)
        function = fragment.get("function") if isinstance(fragment.get("function"), Mapping) else {}
        name = function.get("name") if isinstance(function.get("name"), str) and function.get("name") else None
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping):
            arguments = json.dumps(arguments, ensure_ascii=False)
        return ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments if isinstance(arguments, str) else "")

    def end(self) -> None:
        """The server closed the stream: it must have said it was done."""
        if not self.done and self.finish_reason is None:
            raise StreamCut(f"{self.url} closed the stream before its end")

    def failure(self, exc: BaseException) -> ProviderError:
        if self.started:
            return StreamCut(f"the stream from {self.url} broke: {type(exc).__name__}: {exc}")
        return ProviderError(f"cannot reach {self.url}: {exc}")
