"""``openai``: any OpenAI-compatible chat-completions endpoint, tools included.

    LLM("openai:gpt-4o-mini")                                   # $OPENAI_API_KEY
    LLM("openai:qwen2.5", base_url="http://localhost:8000/v1", api_key="none")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from wilson_core.errors import ProviderError
from wilson_core.interfaces import Provider
from wilson_core.messages import to_openai_messages, tool_call_from_openai
from wilson_core.records import ProviderResponse


class OpenAIProvider(Provider):
    """Chat completions over HTTP (``POST {base_url}/chat/completions``)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
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
