"""The upstream side of a proxied call: kept-alive upstream connections relaying answers byte for byte.

An :class:`Exchange` is one request on its way upstream and its answer on the way
back; an :class:`UpstreamConnection` writes the request and relays every byte the
upstream sends to the client the moment it arrives (``data_received`` ->
``transport.write``), appending the body pieces to the call's :class:`.Captured`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .captured import Captured
from .http import (
    MAX_HEAD,
    ChunkedDecoder,
    HttpError,
    content_length,
    is_chunked,
    parse_headers,
    parse_status_line,
)
from .upstreams import Upstream

if TYPE_CHECKING:
    from .client import ClientConnection
    from .server import ProxyServer


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
