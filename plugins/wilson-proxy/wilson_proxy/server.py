"""The recording reverse proxy: a plain asyncio HTTP/1.1 server with pooled upstream connections.

The request path does as little as it can: it parses the request head, copies
the headers it forwards (the client's auth headers among them, untouched),
writes the request to a kept-alive upstream connection, and writes every byte
the upstream sends to the client the moment it arrives (``data_received`` ->
``transport.write``, no task switch, no buffering).  What is recorded leaves
the request path as raw parts (request body, response body pieces, times) in a
:class:`Captured` handed to the recorder's queue; JSON parsing, stream assembly
and the database writes happen on the recorder's thread.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from wilson_core.records import new_id, utcnow

from .http import (
    HOP_BY_HOP,
    MAX_BODY,
    MAX_HEAD,
    ChunkedDecoder,
    Header,
    HttpError,
    content_length,
    is_chunked,
    parse_headers,
    parse_request_head,
    parse_status_line,
    response_head,
)
from .local import LocalModel
from .localroute import LocalExchange, parse_for_local, start_shadow
from .render import RENDERERS, streamed
from .routes import Route, RouteStats
from .upstreams import RECORDED, Upstream, route

#: the upstream of a call that only a local route answers (``wilson serve``)
LOCAL_ONLY = Upstream(protocol="local", url="local", scheme="http", host="", port=0, base_path=b"",
                      host_line=b"")

#: request headers the proxy reads and never sends upstream
WILSON_HEADERS = (b"x-wilson-run-id", b"x-wilson-call-type", b"x-wilson-metadata", b"x-wilson-token")
_DROPPED = HOP_BY_HOP | {b"host", b"content-length", b"expect", b"accept-encoding"}
MAX_IDLE_PER_UPSTREAM = 256
CONNECT_TIMEOUT_S = 30.0


class Captured:
    """One recorded call as raw parts; the recorder turns it into an interaction."""

    __slots__ = (
        "id", "protocol", "endpoint", "run_id", "run_given", "sequence", "call_type", "metadata",
        "request_body", "status", "content_type", "parts", "times", "started", "ended",
        "outcome", "error", "created_at", "upstream", "answered_by",
    )

    def __init__(self, protocol: str, endpoint: str, request_body: bytes, upstream: str) -> None:
        self.id = new_id()
        self.protocol = protocol
        self.endpoint = endpoint
        self.request_body = request_body
        self.upstream = upstream
        self.run_id: str | None = None
        self.run_given = False
        self.sequence = 1
        self.call_type: str | None = None
        self.metadata: bytes | None = None
        self.status = 0
        self.content_type = b""
        #: the response body (without chunked framing) as it arrived, and when each piece did
        self.parts: list[bytes] = []
        self.times: list[float] = []
        self.started = time.perf_counter()
        self.ended = 0.0
        self.outcome = "ok"
        self.error: str | None = None
        self.created_at = utcnow()
        #: ``NAME:MODEL`` of the local model that answered (routes, ``wilson serve``); ``None``: the upstream
        self.answered_by: str | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    @classmethod
    def from_tuple(cls, values: tuple[Any, ...]) -> Captured:
        captured = cls.__new__(cls)
        for name, value in zip(cls.__slots__, values, strict=True):
            setattr(captured, name, value)
        return captured


def error_body(protocol: str, message: str, kind: str) -> bytes:
    """An error in the shape the client's SDK reads for its protocol."""
    if protocol == "anthropic":
        data: Any = {"type": "error", "error": {"type": kind, "message": message}}
    elif protocol == "ollama":
        data = {"error": message}
    else:
        data = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return json.dumps(data).encode()


class ProxyServer:
    """The proxy's shared state: upstreams, idle upstream connections, run sequence numbers.

    :param upstreams: one :class:`Upstream` per protocol.
    :param submit: called with each finished :class:`Captured` (on the event loop; it
        must only enqueue).  ``None`` records nothing.
    :param token: when set, every request must carry ``X-Wilson-Token: TOKEN``.
    :param call_type: the call type of calls without ``X-Wilson-Call-Type``.
    :param head_timeout: seconds the upstream may take to start its answer.
    :param stats: called for ``GET /wilson/health`` to add the recorder's counters.
    """

    def __init__(
        self,
        upstreams: dict[str, Upstream],
        submit: Callable[[Captured], None] | None = None,
        *,
        token: str | None = None,
        call_type: str = "agent",
        head_timeout: float = 600.0,
        stats: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.upstreams = upstreams
        self.submit = submit
        self.token = token.encode() if token else None
        self.call_type = call_type
        self.head_timeout = head_timeout
        self.stats = stats
        self.idle: dict[tuple[str, str, int], list[UpstreamConnection]] = {}
        self.sequences: dict[str, int] = {}
        self.requests = 0
        self.ssl_contexts: dict[tuple[str, str, int], Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.base_events.Server | None = None
        self.clients: set[ClientConnection] = set()
        self.routes: list[Route] = []
        self.routes_by_model = False
        self.local_models: dict[str, LocalModel] = {}
        self.route_stats: dict[str, RouteStats] = {}
        self.shadow_inflight: dict[str, int] = {}
        #: ``wilson serve``: the model name /v1/models lists
        self.served_model: str | None = None

    # -- routes ---------------------------------------------------------------

    def set_routes(self, routes: list[Route]) -> None:
        """Use ``routes`` from the next request on (calls in flight keep theirs)."""
        wanted = {route.provider for route in routes}
        for spec in list(self.local_models):
            if spec not in wanted:
                self.local_models.pop(spec).close()
        self.routes_by_model = any(route.model is not None for route in routes)
        self.routes = list(routes)

    def local_model(self, route: Route) -> LocalModel:
        model = self.local_models.get(route.provider)
        if model is None:
            model = self.local_models[route.provider] = LocalModel(route.provider, route.options)
        return model

    def stats_for(self, route: Route) -> RouteStats:
        stats = self.route_stats.get(route.name)
        if stats is None:
            stats = self.route_stats[route.name] = RouteStats()
        return stats

    def pick_route(self, request: Any, call_type: str | None, headers: list[Header]) -> Route | None:
        model = request.get("model") if isinstance(request, dict) else None
        present = {lower: value for lower, value, _ in headers}
        for candidate in self.routes:
            if candidate.matches(model if isinstance(model, str) else None, call_type, present):
                return candidate
        return None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port); return the port."""
        self.loop = asyncio.get_running_loop()
        self.server = await self.loop.create_server(lambda: ClientConnection(self), host, port, backlog=1024)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop accepting, let calls in flight finish (up to 10 s), close every connection."""
        if self.server is not None:
            self.server.close()
        deadline = time.monotonic() + 10
        while any(c.exchange is not None for c in self.clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.close()
        for connections in self.idle.values():
            for connection in connections:
                if connection.transport is not None:
                    connection.transport.close()
        self.idle.clear()
        await asyncio.sleep(0)

    # -- runs ---------------------------------------------------------------

    def next_sequence(self, run_id: str) -> int:
        sequences = self.sequences
        sequence = sequences.get(run_id, 0) + 1
        if sequence == 1 and len(sequences) >= 100_000:
            sequences.clear()  # bounded memory; a run that long-lived restarts at its own count
        sequences[run_id] = sequence
        return sequence

    # -- upstream connections -------------------------------------------------

    def send(self, exchange: Exchange) -> None:
        idle = self.idle.get(exchange.upstream.key)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                connection.begin(exchange)
                return
        assert self.loop is not None
        self.loop.create_task(self._connect(exchange))

    async def _connect(self, exchange: Exchange) -> None:
        upstream = exchange.upstream
        context = self.ssl_contexts.get(upstream.key)
        if context is None and upstream.scheme == "https":
            context = self.ssl_contexts[upstream.key] = upstream.ssl_context()
        assert self.loop is not None
        try:
            _, connection = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: UpstreamConnection(self, upstream),
                    upstream.host,
                    upstream.port,
                    ssl=context,
                    server_hostname=upstream.host if context else None,
                ),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            exchange.finish("error", f"upstream {upstream.url} unreachable: {reason}", 502)
            return
        if exchange.client_gone:
            self.release(connection)
            exchange.finish("incomplete", "the client disconnected before the upstream answered")
            return
        connection.begin(exchange)

    def release(self, connection: UpstreamConnection) -> None:
        idle = self.idle.setdefault(connection.upstream.key, [])
        if len(idle) < MAX_IDLE_PER_UPSTREAM and not connection.closed:
            idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    def routes_json(self) -> dict[str, Any]:
        return {"routes": [
            {"name": r.name, "mode": r.mode, "provider": r.provider, "match": r.describe(), "sample": r.sample,
             "max_concurrency": r.max_concurrency, "timeout": r.timeout, **self.stats_for(r).as_json()}
            for r in self.routes
        ]}

    def discard(self, connection: UpstreamConnection) -> None:
        idle = self.idle.get(connection.upstream.key)
        if idle and connection in idle:
            idle.remove(connection)


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

    def fail(self, status: int, message: str, protocol: str = "openai", keep_alive: bool = False) -> None:
        """Answer the request with an error of the proxy's own."""
        if self.transport is None or self.transport.is_closing():
            return
        body = error_body(protocol, f"wilson proxy: {message}", "proxy_error" if status != 401 else "authentication_error")
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
            messages, tools, params = parse_for_local(protocol, endpoint, request)
        except Exception as exc:  # a request the converter cannot read: the protocol's 400
            self.fail(400, f"cannot read the request: {exc}", protocol, keep_alive=keep_alive)
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


class Exchange:
    """One request on its way upstream and its answer on the way back."""

    __slots__ = (
        "client", "upstream", "request", "head_only", "keep_alive", "captured", "connection",
        "attempts", "head_sent", "done", "client_gone", "timer",
    )

    def __init__(
        self,
        client: ClientConnection,
        upstream: Upstream,
        request: bytes,
        head_only: bool,
        keep_alive: bool,
        captured: Captured | None,
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.request = request
        self.head_only = head_only
        self.keep_alive = keep_alive
        self.captured = captured
        self.connection: UpstreamConnection | None = None
        self.attempts = 0
        self.head_sent = False
        self.done = False
        self.client_gone = False
        self.timer: asyncio.TimerHandle | None = None

    def client_lost(self) -> None:
        self.client_gone = True
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.abort()  # stop the upstream's work too

    def timed_out(self) -> None:
        connection = self.connection
        self.finish("error", f"upstream {self.upstream.url} did not answer within "
                    f"{self.client.proxy.head_timeout:g} s", 504)
        if connection is not None and connection.transport is not None:
            connection.exchange = None
            connection.transport.abort()

    def finish(self, outcome: str, error: str | None = None, status: int = 502) -> None:
        """The exchange is over: answered (``ok``), cut short (``incomplete``) or failed (``error``)."""
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        captured = self.captured
        if captured is not None:
            captured.ended = time.perf_counter()
            captured.outcome = outcome
            captured.error = error
            if not self.head_sent:
                captured.status = status
            submit = self.client.proxy.submit
            if submit is not None:
                submit(captured)
        client = self.client
        if outcome == "ok":
            client.exchange_done(self.keep_alive)
        elif self.client_gone:
            client.exchange_done(False)
        elif not self.head_sent:
            client.fail(status, error or "upstream failed", self.upstream.protocol, keep_alive=self.keep_alive)
            client.exchange_done(self.keep_alive)
        else:  # the answer was cut short: the client must see it cut short too
            client.exchange_done(False)


class UpstreamConnection(asyncio.Protocol):
    """One kept-alive connection to an upstream; relays each answer to its exchange's client."""

    def __init__(self, proxy: ProxyServer, upstream: Upstream) -> None:
        self.proxy = proxy
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.closed = False
        self.uses = 0
        self.buffer = b""
        self.head_done = False
        self.received = 0
        self.reusable = True
        self.decoder: ChunkedDecoder | None = None
        self.remaining: int | None = None
        self.head_bytes = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def begin(self, exchange: Exchange) -> None:
        if exchange.timer is not None:  # a retry on a new connection
            exchange.timer.cancel()
        self.exchange = exchange
        exchange.connection = self
        exchange.attempts += 1
        self.uses += 1
        self.buffer = b""
        self.head_done = False
        self.received = 0
        self.decoder = None
        self.remaining = None
        self.head_bytes = b""
        timeout = self.proxy.head_timeout
        if timeout:
            assert self.proxy.loop is not None
            exchange.timer = self.proxy.loop.call_later(timeout, exchange.timed_out)
        assert self.transport is not None
        self.transport.write(exchange.request)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for: this connection cannot be trusted
            self.reusable = False
            if self.transport is not None:
                self.transport.close()
            return
        self.received += len(data)
        try:
            if not self.head_done:
                data = self.read_head(exchange, data)
                if data is None:
                    return
            self.relay_body(exchange, data)
        except HttpError as exc:
            self.reusable = False
            exchange.finish("error", exc.message, exc.status)
            self.exchange = None
            if self.transport is not None:
                self.transport.close()

    def read_head(self, exchange: Exchange, data: bytes) -> bytes | None:
        """Parse the answer's head; send it on to the client; return the body bytes after it."""
        buffer = self.buffer + data if self.buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise HttpError(502, "upstream sent a head too large")
            self.buffer = buffer
            return None
        self.buffer = b""
        lines = buffer[:end].split(b"\r\n")
        status = parse_status_line(lines[0])
        rest = buffer[end + 4 :]
        if 100 <= status < 200:  # an interim answer (we never send Expect): skip it
            return self.read_head(exchange, rest) if rest else None
        headers = parse_headers(lines[1:])
        self.head_done = True
        if exchange.timer is not None:
            exchange.timer.cancel()
            exchange.timer = None
        close_after = False
        rebuild = False
        content_type = b""
        for lower, value, _ in headers:
            if lower == b"connection":
                rebuild = True
                if b"close" in value.lower():
                    self.reusable = False
            elif lower == b"keep-alive":
                rebuild = True
            elif lower == b"content-type":
                content_type = value
        if exchange.head_only or status in (204, 304):
            self.remaining = 0
        elif is_chunked(headers):
            self.decoder = ChunkedDecoder()
        else:
            self.remaining = content_length(headers, upstream=True)
            if self.remaining is None:  # delimited by the upstream closing: so must ours be
                self.reusable = False
                close_after = True
                exchange.keep_alive = False
        captured = exchange.captured
        out_lines = lines
        if rebuild or close_after or captured is not None or not exchange.keep_alive:
            out_lines = [lines[0]] + [
                line for (lower, _, line) in headers if lower not in (b"connection", b"keep-alive")
            ]
            if captured is not None:
                out_lines.append(b"x-wilson-interaction-id: " + captured.id.encode())
            if not exchange.keep_alive:
                out_lines.append(b"connection: close")
        if captured is not None:
            captured.status = status
            captured.content_type = content_type
        head = b"\r\n".join(out_lines) + b"\r\n\r\n" if out_lines is not lines else buffer[: end + 4]
        exchange.head_sent = True
        if self.remaining == 0 or not rest:
            client = exchange.client
            if not client.closed and client.transport is not None:
                client.transport.write(head)
            if self.remaining == 0:
                self.complete(exchange)
            return None
        self.head_bytes = head  # sent together with the first body bytes: one write, one segment
        return rest

    def relay_body(self, exchange: Exchange, data: bytes) -> None:
        if not data:
            return
        captured = exchange.captured
        decoder = self.decoder
        done = False
        if decoder is not None:
            pieces = decoder.feed(data)
            if decoder.done:
                done = True
                if decoder.rest:
                    data = data[: len(data) - len(decoder.rest)]
                    self.reusable = False
        elif self.remaining is not None:
            if len(data) >= self.remaining:
                if len(data) > self.remaining:
                    data = data[: self.remaining]
                    self.reusable = False
                done = True
            self.remaining -= len(data)
            pieces = [data]
        else:
            pieces = [data]
        if captured is not None and pieces:
            captured.parts.append(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            captured.times.append(time.perf_counter())
        client = exchange.client
        if self.head_bytes:
            data, self.head_bytes = self.head_bytes + data, b""
        if not client.closed and client.transport is not None:
            client.transport.write(data)
        if done:
            self.complete(exchange)

    def complete(self, exchange: Exchange) -> None:
        self.exchange = None
        if self.reusable and not self.closed:
            self.proxy.release(self)
        elif self.transport is not None:
            self.transport.close()
        exchange.finish("ok")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.discard(self)
        exchange, self.exchange = self.exchange, None
        if exchange is None or exchange.done:
            return
        if self.head_done and self.decoder is None and self.remaining is None:
            exchange.finish("ok")  # a body delimited by the connection's end: complete
        elif exchange.client_gone:
            exchange.finish("incomplete", "the client disconnected mid-answer")
        elif self.received == 0 and self.uses > 1 and exchange.attempts < 3:
            self.proxy.send(exchange)  # a kept-alive connection the upstream had closed: retry on a new one
        elif self.head_done:
            exchange.finish("incomplete", "the upstream closed the connection mid-answer")
        else:
            reason = f": {exc}" if exc else ""
            exchange.finish("error", f"upstream {self.upstream.url} closed the connection before answering{reason}")
