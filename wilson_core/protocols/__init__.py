"""Wire protocols Wilson captures: pure converters shared by the SDK wrappers and the proxy.

    from wilson_core.protocols import PROTOCOLS, for_path
    proto = for_path("/v1/chat/completions")          # the openai_chat module
    request = proto.parse_request(body_bytes)          # Request(messages, tools, params, model, stream)
    result = proto.parse_response(response_bytes, request)   # Result(content, tool_calls, usage, ...)
    assembler = proto.Assembler(request)               # for a streamed answer
    assembler.feed_bytes(chunk) ...; assembler.result()   # partial when the stream broke

See :mod:`.common` for the records and the shared SSE / NDJSON decoders.
"""

from __future__ import annotations

from types import ModuleType

from . import anthropic, ollama, openai_chat, openai_responses
from .common import (
    Assembler,
    NDJSONDecoder,
    ProtocolError,
    Request,
    Result,
    SSEDecoder,
    SSEEvent,
)

#: protocol name -> converter module
PROTOCOLS: dict[str, ModuleType] = {
    m.NAME: m for m in (openai_chat, openai_responses, anthropic, ollama)
}


def for_path(path: str) -> ModuleType | None:
    """The converter for a request path (``/v1/chat/completions``, ``/v1/responses``,
    ``/v1/messages``, ``/api/chat``; any prefix before them), or ``None``."""
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions"):
        return openai_chat
    if path.endswith("/responses"):
        return openai_responses
    if path.endswith("/v1/messages") or path == "/messages" or path.endswith("/messages") and "/threads/" not in path:
        return anthropic
    if path.endswith("/api/chat"):
        return ollama
    return None


__all__ = [
    "PROTOCOLS",
    "Assembler",
    "NDJSONDecoder",
    "ProtocolError",
    "Request",
    "Result",
    "SSEDecoder",
    "SSEEvent",
    "anthropic",
    "for_path",
    "ollama",
    "openai_chat",
    "openai_responses",
]
