"""``ollama``: a model served by Ollama, through its native ``/api/chat``.

    LLM("ollama:wilson-finance")                      # http://127.0.0.1:11434
    LLM("ollama:llama3.2", host="http://gpu-box:11434")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from wilson_core.errors import ProviderError
from wilson_core.interfaces import Provider
from wilson_core.messages import tool_call_from_openai
from wilson_core.records import ProviderResponse

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
