"""Which upstream each request goes to, and which requests are recorded.

An app points its SDK at the proxy exactly where it pointed at the provider:

========== ================================ ====================================
protocol   the app sets                     paths (recorded ones marked *)
========== ================================ ====================================
openai     ``OPENAI_BASE_URL=http://H:P/v1`` ``/v1/chat/completions`` *,
                                             ``/v1/responses`` *, ``/v1/models``,
                                             any other ``/v1/...``
anthropic  ``ANTHROPIC_BASE_URL=http://H:P`` ``/v1/messages`` *, ``/v1/messages/...``
ollama     ``OLLAMA_HOST=http://H:P``        ``/api/chat`` *, any other ``/api/...``
========== ================================ ====================================

Each protocol has one upstream base URL, the one its SDK itself uses
(``https://api.openai.com/v1``, ``https://api.anthropic.com``,
``http://127.0.0.1:11434``); the part of the path after the protocol's prefix
is appended to it.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from attrs import frozen

PROTOCOLS = ("openai", "anthropic", "ollama")

DEFAULT_UPSTREAMS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "ollama": "http://127.0.0.1:11434",
}

#: recorded endpoints: proxy path -> (protocol, endpoint name used by the converters)
RECORDED = {
    b"/v1/chat/completions": ("openai", "chat"),
    b"/v1/responses": ("openai", "responses"),
    b"/v1/messages": ("anthropic", "messages"),
    b"/api/chat": ("ollama", "chat"),
}


class UpstreamError(ValueError):
    """An ``--upstream`` value that cannot be used (the message says why)."""


@frozen
class Upstream:
    protocol: str
    url: str
    scheme: str
    host: str
    port: int
    base_path: bytes
    #: the ``Host`` header line sent upstream
    host_line: bytes

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context() if self.scheme == "https" else None


def parse_upstream(protocol: str, url: str) -> Upstream:
    if protocol not in PROTOCOLS:
        raise UpstreamError(f"unknown protocol {protocol!r} (use one of {', '.join(PROTOCOLS)})")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamError(f"upstream for {protocol} must be an http:// or https:// URL, got {url!r}")
    if parts.query or parts.fragment:
        raise UpstreamError(f"upstream URL {url!r} must not have a query or fragment")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UpstreamError(f"upstream URL {url!r}: {exc}") from None
    path = parts.path.rstrip("/")
    if protocol == "anthropic" and path.endswith("/v1"):
        path = path[:-3]  # the Anthropic SDK's base URL has no /v1; accept it written with one
    if protocol == "ollama" and path.endswith("/api"):
        path = path[:-4]
    default_port = port == (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    try:
        host_line = f"Host: {shown}{'' if default_port else f':{port}'}\r\n".encode("ascii")
    except UnicodeEncodeError:
        raise UpstreamError(f"upstream host {host!r} must be ASCII (write it in punycode)") from None
    return Upstream(
        protocol=protocol,
        url=url,
        scheme=parts.scheme,
        host=host,
        port=port,
        base_path=path.encode("ascii"),
        host_line=host_line,
    )


def guess_protocol(url: str) -> str:
    """The protocol of an upstream given without ``NAME=``: by its host, port and path."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if "anthropic" in host:
        return "anthropic"
    if parts.port == 11434 or "ollama" in host or parts.path.rstrip("/").endswith("/api"):
        return "ollama"
    return "openai"


def parse_upstream_options(values: list[str] | tuple[str, ...]) -> dict[str, Upstream]:
    """``--upstream`` values (``URL`` or ``PROTOCOL=URL``) over the defaults."""
    chosen = dict(DEFAULT_UPSTREAMS)
    for value in values:
        name, equals, url = value.partition("=")
        if equals and name.strip() in PROTOCOLS:
            chosen[name.strip()] = url
        elif equals and "://" not in name:
            raise UpstreamError(f"unknown protocol {name.strip()!r} in --upstream {value!r} "
                                f"(use one of {', '.join(PROTOCOLS)})")
        else:
            chosen[guess_protocol(value)] = value
    return {protocol: parse_upstream(protocol, url) for protocol, url in chosen.items()}


def route(path: bytes) -> tuple[str, bytes] | None:
    """``(protocol, the path's part after the protocol's prefix)`` for a proxy path (no query)."""
    if path.startswith(b"/v1/messages") or path == b"/v1/complete":
        return "anthropic", path
    if path.startswith(b"/api/"):
        return "ollama", path
    if path.startswith(b"/v1/") or path == b"/v1":
        return "openai", path[3:]
    return None
