"""The recording reverse proxy: a plain asyncio HTTP/1.1 server with pooled upstream connections.

The request path does as little as it can: it parses the request head, copies
the headers it forwards (the client's auth headers among them, untouched),
writes the request to a kept-alive upstream connection, and writes every byte
the upstream sends to the client the moment it arrives (``data_received`` ->
``transport.write``, no task switch, no buffering).  What is recorded leaves
the request path as raw parts (request body, response body pieces, times) in a
:class:`Captured` handed to the recorder's queue; JSON parsing, stream assembly
and the database writes happen on the recorder's thread.

The parts, one module each: :mod:`.server` (the shared state: routes, local
models, the pool of idle upstream connections, run sequence numbers),
:mod:`.client` (the app's side: parsing and dispatch), :mod:`.relay` (the
upstream's side), :mod:`.captured` (what is recorded), :mod:`.localroute`
(answers of local models), :mod:`.recorder` (the database writes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from .captured import Captured, error_body
from .client import LOCAL_ONLY, WILSON_HEADERS, ClientConnection
from .http import Header
from .live import LIVE
from .local import LocalModel
from .relay import Exchange, UpstreamConnection
from .routes import Route, RouteStats
from .upstreams import Upstream

__all__ = [
    "LOCAL_ONLY", "WILSON_HEADERS", "Captured", "ClientConnection", "Exchange", "ProxyServer",
    "UpstreamConnection", "error_body",
]

MAX_IDLE_PER_UPSTREAM = 256
CONNECT_TIMEOUT_S = 30.0


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
        #: the longest answer a local model gives (``wilson serve --max-tokens``); asking more is a 400
        self.max_tokens_limit: int | None = None
        #: what ``registry:live`` routes resolve to now (:mod:`.live`; set on the event loop)
        self.live_spec: str | None = None

    # -- routes ---------------------------------------------------------------

    def set_routes(self, routes: list[Route]) -> None:
        """Use ``routes`` from the next request on (calls in flight keep theirs)."""
        self.routes_by_model = any(route.model is not None for route in routes)
        self.routes = list(routes)
        self._retire_unused()

    def set_live(self, spec: str | None) -> None:
        """``registry:live`` routes go to ``spec`` from the next request on (``None``: upstream)."""
        if spec != self.live_spec:
            self.live_spec = spec
            self._retire_unused()

    def uses_live(self) -> bool:
        return any(route.provider == LIVE for route in self.routes)

    def provider_for(self, route: Route) -> str | None:
        """The ``NAME:MODEL`` that answers ``route`` now (``None``: no model is live)."""
        return self.live_spec if route.provider == LIVE else route.provider

    def _retire_unused(self) -> None:
        wanted = {self.provider_for(route) for route in self.routes}
        for spec in list(self.local_models):
            if spec not in wanted:
                self.local_models.pop(spec).retire()  # its queued calls are answered first

    def local_model(self, route: Route) -> LocalModel:
        spec = self.provider_for(route)
        assert spec is not None, "pick_route never picks a registry:live route while no model is live"
        model = self.local_models.get(spec)
        if model is None:
            model = self.local_models[spec] = LocalModel(spec, route.options)
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
            if candidate.provider == LIVE and self.live_spec is None:
                continue  # no model is live yet: these calls go upstream
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
            {"name": r.name, "mode": r.mode, "provider": r.provider, "serves": self.provider_for(r),
             "match": r.describe(), "sample": r.sample,
             "max_concurrency": r.max_concurrency, "timeout": r.timeout, **self.stats_for(r).as_json()}
            for r in self.routes
        ]}

    def discard(self, connection: UpstreamConnection) -> None:
        idle = self.idle.get(connection.upstream.key)
        if idle and connection in idle:
            idle.remove(connection)
