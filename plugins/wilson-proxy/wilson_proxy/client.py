"""The app side of the proxy: one connection from an app, its requests parsed and dispatched.

:class:`ClientConnection` parses requests one after the other (keep-alive,
pipelining, chunked bodies), answers the proxy's own endpoints
(``/wilson/health``, ``/wilson/routes``, ``/v1/models`` of ``wilson serve``),
and sends each recorded call upstream (:mod:`.relay`), to a local model
(:mod:`.localroute`) or both (shadow).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import TYPE_CHECKING, Any

from wilson_core.errors import parameter_error
from wilson_core.records import new_id

from .captured import INVALID_REQUEST, Captured, error_body
from .http import (
    HOP_BY_HOP,
    MAX_BODY,
    MAX_HEAD,
    ChunkedDecoder,
    Header,
    HttpError,
    content_length,
    is_chunked,
    parse_request_head,
    response_head,
)
from .localroute import LocalExchange, parse_for_local, start_shadow
from .relay import Exchange
from .render import RENDERERS, streamed
from .routes import Route
from .upstreams import RECORDED, Upstream, route

if TYPE_CHECKING:
    from .server import ProxyServer

#: the upstream of a call that only a local route answers (``wilson serve``)
LOCAL_ONLY = Upstream(protocol="local", url="local", scheme="http", host="", port=0, base_path=b"",
                      host_line=b"")

#: request headers the proxy reads and never sends upstream
WILSON_HEADERS = (b"x-wilson-run-id", b"x-wilson-call-type", b"x-wilson-metadata", b"x-wilson-token")
_DROPPED = HOP_BY_HOP | {b"host", b"content-length", b"expect", b"accept-encoding"}


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class ClientConnection(asyncio.Protocol):
    """One connection from an app: parses requests one after the other (keep-alive, pipelining)."""

    def __init__(self, proxy: ProxyServer) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.exchange: Exchange | None = None
        self.closed = False
        self.head: tuple[bytes, bytes, bytes, list[Header]] | None = None
        self.needed = 0
        self.decoder: ChunkedDecoder | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proxy.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.clients.discard(self)
        exchange = self.exchange
        if exchange is not None and not exchange.done:
            exchange.client_lost()

    def pause_writing(self) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.connection is not None and exchange.connection.transport:
            exchange.connection.transport.pause_reading()

    def resume_writing(self) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.connection is not None and exchange.connection.transport:
            exchange.connection.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        if self.exchange is None:
            self.advance()

    def advance(self) -> None:
        """Parse as much of the next request as has arrived; dispatch it when complete."""
        try:
            while self.exchange is None and not self.closed and self.buffer:
                if self.head is None:
                    buffer = self.buffer.lstrip(b"\r\n") if self.buffer[:1] in (b"\r", b"\n") else self.buffer
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        self.buffer = buffer
                        if len(buffer) > MAX_HEAD:
                            raise HttpError(431, "request head too large")
                        return
                    self.head = head = parse_request_head(buffer[:end])
                    self.buffer = buffer[end + 4 :]
                    headers = head[3]
                    if is_chunked(headers):
                        self.decoder, self.needed = ChunkedDecoder(), 0
                    else:
                        self.decoder, self.needed = None, content_length(headers) or 0
                        if self.needed > MAX_BODY:
                            raise HttpError(413, "request body too large")
                    self.body = []
                    if (self.decoder is not None or len(self.buffer) < self.needed) and any(
                        lower == b"expect" and value.lower() == b"100-continue" for lower, value, _ in headers
                    ):
                        assert self.transport is not None
                        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if self.decoder is not None:
                    self.body += self.decoder.feed(self.buffer)
                    if not self.decoder.done:
                        self.buffer = b""
                        if sum(map(len, self.body)) > MAX_BODY:
                            raise HttpError(413, "request body too large")
                        return
                    self.buffer = self.decoder.rest
                    body = b"".join(self.body)
                else:
                    if len(self.buffer) < self.needed:
                        return
                    body, self.buffer = self.buffer[: self.needed], self.buffer[self.needed :]
                head, self.head = self.head, None
                self.dispatch(*head, body)
        except HttpError as exc:
            self.fail(exc.status, exc.message)

    def fail(self, status: int, message: str, protocol: str = "openai", keep_alive: bool = False,
             param: str | None = None) -> None:
        """Answer the request with an error of the proxy's own (400: the request's fault, naming ``param``)."""
        if self.transport is None or self.transport.is_closing():
            return
        kind = {400: INVALID_REQUEST, 401: "authentication_error"}.get(status, "proxy_error")
        body = error_body(protocol, f"wilson proxy: {message}", kind, param)
        headers = [("content-type", "application/json")]
        if not keep_alive:
            headers.append(("connection", "close"))
        self.transport.write(response_head(status, headers, len(body)) + body)
        if not keep_alive:
            self.closed = True
            self.transport.close()

    def dispatch(self, method: bytes, target: bytes, version: bytes, headers: list[Header], body: bytes) -> None:
        proxy = self.proxy
        proxy.requests += 1
        keep_alive = version == b"HTTP/1.1"
        path = target.split(b"?", 1)[0]
        run_id = call_type = metadata = token = None
        connection_tokens: list[bytes] = []
        forwarded: list[bytes] = []
        for lower, value, line in headers:
            if lower.startswith(b"x-wilson-"):
                if lower == b"x-wilson-run-id":
                    run_id = value
                elif lower == b"x-wilson-call-type":
                    call_type = value
                elif lower == b"x-wilson-metadata":
                    metadata = value
                elif lower == b"x-wilson-token":
                    token = value
                continue
            if lower in _DROPPED:
                if lower == b"connection":
                    connection_tokens = [t.strip().lower() for t in value.split(b",")]
                    if b"close" in connection_tokens:
                        keep_alive = False
                    elif b"keep-alive" in connection_tokens:
                        keep_alive = True
                continue
            forwarded.append(line)
        if connection_tokens:
            forwarded = [line for line in forwarded if line.split(b":", 1)[0].strip().lower() not in connection_tokens]
        if proxy.token is not None and (token is None or not hmac.compare_digest(token, proxy.token)):
            self.fail(401, "missing or wrong X-Wilson-Token header", keep_alive=keep_alive)
            return
        if path == b"/wilson/health" and method == b"GET":
            self.answer_health(keep_alive)
            return
        if path == b"/wilson/routes" and method == b"GET":
            self.answer_json(proxy.routes_json(), keep_alive)
            return
        if path == b"/v1/models" and proxy.served_model is not None:
            self.answer_json({"object": "list", "data": [{"id": proxy.served_model, "object": "model",
                                                          "created": 0, "owned_by": "wilson"}]}, keep_alive)
            return
        routed = route(path)
        if routed is None:
            self.fail(404, f"no route for {path.decode('latin-1')[:200]}: the proxy serves /v1/... (OpenAI), "
                      "/v1/messages (Anthropic) and /api/... (Ollama)", keep_alive=keep_alive)
            return
        protocol, rest = routed
        upstream = proxy.upstreams.get(protocol)
        recorded = RECORDED.get(path) if method == b"POST" else None
        local_route = request_json = None
        if proxy.routes and recorded is not None and (protocol, recorded[1]) in RENDERERS:
            # the body is parsed on the request path only when a route matches on the model,
            # or a local model answers (a shadow's copy is parsed on the local model's thread)
            if proxy.routes_by_model:
                request_json = _json_object(body)
            if request_json is not None or not proxy.routes_by_model:
                local_route = proxy.pick_route(
                    request_json, call_type.decode("utf-8", "replace") if call_type else proxy.call_type, headers)
            if local_route is not None and local_route.mode != "shadow" and request_json is None:
                request_json = _json_object(body)
                if request_json is None:
                    if upstream is None:  # nothing but the local model answers: the body is the client's fault
                        self.fail(400, "the request body is not a JSON object", protocol, keep_alive=keep_alive)
                        return
                    local_route = None
        if upstream is None and (local_route is None or local_route.mode == "shadow"):
            self.fail(404, f"nothing answers {path.decode('latin-1')[:200]} here (no upstream for {protocol})",
                      protocol, keep_alive=keep_alive)
            return
        if upstream is None:
            upstream = LOCAL_ONLY
        query = target[len(path):]
        request = [method, b" ", upstream.base_path, rest, query, b" HTTP/1.1\r\n", upstream.host_line]
        for line in forwarded:
            request += (line, b"\r\n")
        if body or method in (b"POST", b"PUT", b"PATCH"):
            request.append(b"Content-Length: %d\r\n" % len(body))
        request.append(b"Accept-Encoding: identity\r\n\r\n")
        request.append(body)
        captured = None
        if recorded is not None and proxy.submit is not None:
            captured = Captured(protocol, recorded[1], body, upstream.url)
            if run_id:
                captured.run_id = run_id.decode("utf-8", "replace")[:200]
                captured.run_given = True
                captured.sequence = proxy.next_sequence(captured.run_id)
            else:
                captured.run_id = new_id()
            captured.call_type = call_type.decode("utf-8", "replace")[:200] if call_type else proxy.call_type
            captured.metadata = metadata
        exchange = Exchange(self, upstream, b"".join(request), method == b"HEAD", keep_alive, captured)
        if local_route is not None and recorded is not None:
            if local_route.mode == "shadow":
                self.exchange = exchange
                proxy.send(exchange)
                if captured is not None:
                    start_shadow(proxy, local_route, captured)
                return
            assert request_json is not None
            self.answer_locally(local_route, protocol, recorded[1], request_json, captured, keep_alive,
                                exchange if local_route.mode == "fallback" else None)
            return
        self.exchange = exchange
        proxy.send(exchange)

    def answer_locally(self, route: Route, protocol: str, endpoint: str, request: dict[str, Any],
                       captured: Captured | None, keep_alive: bool, fallback: Exchange | None) -> None:
        proxy = self.proxy
        proxy.stats_for(route).count("calls")
        try:
            messages, tools, params = parse_for_local(protocol, endpoint, request, proxy.max_tokens_limit)
        except Exception as exc:  # a request the converter cannot read, or a parameter out of range: a 400
            if fallback is not None:  # the upstream judges what the local model cannot take
                proxy.stats_for(route).count("fallback_to_upstream")
                self.exchange = fallback
                proxy.send(fallback)
                return
            refused = parameter_error(exc)
            message = str(exc) if refused is not None else f"cannot read the request: {exc}"
            self.fail(400, message, protocol, keep_alive=keep_alive, param=refused.param if refused else None)
            return
        model_name = str(request.get("model") or route.provider)
        renderer = RENDERERS[(protocol, endpoint)](model_name, streamed(protocol, request), request)
        local = LocalExchange(self, route, renderer, captured, keep_alive, request, fallback)
        self.exchange = local  # type: ignore[assignment]
        local.start(messages, tools, params)

    def answer_health(self, keep_alive: bool) -> None:
        proxy = self.proxy
        data = {"ok": True, "requests": proxy.requests}
        if proxy.stats is not None:
            data.update(proxy.stats())
        self.answer_json(data, keep_alive)

    def answer_json(self, data: Any, keep_alive: bool) -> None:
        body = json.dumps(data).encode()
        headers = [("content-type", "application/json")] + ([] if keep_alive else [("connection", "close")])
        assert self.transport is not None
        self.transport.write(response_head(200, headers, len(body)) + body)
        if not keep_alive:
            self.closed = True
            self.transport.close()

    def exchange_done(self, keep_alive: bool) -> None:
        self.exchange = None
        if self.closed or self.transport is None:
            return
        if not keep_alive:
            self.closed = True
            self.transport.close()
        elif self.buffer:
            self.advance()
