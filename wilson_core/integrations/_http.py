"""Capture at the SDK's HTTP client: the bytes the SDK sends and reads, untouched.

The official ``openai`` and ``anthropic`` SDKs send every request through one
HTTP client (``client._client``, an ``httpx``-style client).  Wrapping its
``send`` sees each request body and, by teeing the response's byte stream,
each answer exactly as the SDK reads it, streamed or not.  The SDK parses the
same bytes as before, so what the app gets (types, values, exceptions) does
not change; the wire converters of :mod:`wilson_core.protocols` turn the
request and the answer into Wilson's records.

- A call is captured when its answer's body ends: read to the end, closed
  by the app (a stream it abandoned: ``status="incomplete"`` with the partial
  text, unless its last event had come), cut by the network (incomplete), or
  garbage-collected unread.
- Each HTTP attempt is one interaction: an SDK retry after a 429 records the
  429 (``status="error"``) and then the retried call.
- The current ``wilson_core.run()`` is taken when the request is sent.
- Nothing here raises into the app: a failure of capture is counted
  (``wilson_core.capture.capture_failures()``) and logged.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any

from wilson_core import capture, protocols
from wilson_core.protocols.common import Request, Result
from wilson_core.records import STATUS_ERROR, STATUS_INCOMPLETE

log = logging.getLogger("wilson.capture")

ABANDONED = "the app closed the stream before its end"
COLLECTED = "the stream was dropped unread before its end"


def _failure(what: str, error: BaseException) -> None:
    capture._internal_failure(what, error)


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Exchange:
    """One request and its answer, captured when the answer ends (once)."""

    def __init__(self, tap: Tap, proto: ModuleType, request: Request, call: capture.CallCapture) -> None:
        self.tap = tap
        self.proto = proto
        self.request = request
        self.call = call
        self.status = 0
        self.assembler: Any = None
        self.body: list[bytes] = []

    def on_response(self, status: int) -> None:
        self.status = status
        if status < 400 and self.request.stream:
            self.assembler = self.proto.Assembler(self.request)

    def on_bytes(self, chunk: bytes) -> None:
        try:
            if self.assembler is not None:
                if self.assembler.feed_bytes(chunk):
                    self.call.first_token()
            else:
                self.body.append(bytes(chunk))
        except Exception as exc:  # a converter bug must not reach the app
            self.assembler, self.status = None, -1
            _failure("reading a streamed answer", exc)

    def finish(self, interrupted: str | None = None) -> None:
        if self.call.done:
            return
        try:
            result = self._result(interrupted)
            self._record_error_results()
            request = self.request
            self.call.finish(
                provider=self.tap.provider,
                model=result.model or request.model or "unknown",
                messages=request.messages,
                tools=request.tools,
                params=request.params,
                **result.answer_parts(),
                error=result.error,
            )
        except Exception as exc:
            _failure("recording a wrapped call", exc)

    def failed(self, error: BaseException) -> None:
        """The request raised before an answer came (connection refused, timeout, cancelled)."""
        if self.call.done:
            return
        status = STATUS_ERROR if isinstance(error, Exception) else STATUS_INCOMPLETE
        try:
            self._record_error_results()
            self.call.finish(
                provider=self.tap.provider,
                model=self.request.model or "unknown",
                messages=self.request.messages,
                tools=self.request.tools,
                params=self.request.params,
                status=status,
                error=describe(error),
            )
        except Exception as exc:
            _failure("recording a failed wrapped call", exc)

    def _result(self, interrupted: str | None) -> Result:
        body = b"".join(self.body)
        if self.status >= 400:
            return Result(status=STATUS_ERROR, error=self.proto.error_text(self.status, body))
        if self.status < 0:
            return Result(status=STATUS_INCOMPLETE, error="the answer could not be read (capture error)")
        if self.assembler is not None:
            return self.assembler.result(interrupted)
        if interrupted is not None:
            return Result(status=STATUS_INCOMPLETE, error=interrupted)
        try:
            return self.proto.parse_response(body, self.request)
        except protocols.ProtocolError as exc:  # the call happened: record it, as an error
            return Result(status=STATUS_ERROR, error=f"unreadable answer: {exc}")

    def _record_error_results(self) -> None:
        """Tool results the app marked as errors (Anthropic ``is_error``), with that flag."""
        for message in self.request.messages:
            if message.get("role") == "tool" and message.get("is_error") and message.get("tool_call_id"):
                try:
                    self.call.run.record_tool_result(
                        message["tool_call_id"], message.get("content"), is_error=True, db=self.call.db_path
                    )
                except KeyError:
                    pass


def _stream_classes(response: Any) -> tuple[type, type]:
    """The byte-stream base classes of the HTTP library the SDK uses (httpx or httpx2)."""
    library: ModuleType = sys.modules[type(response).__module__.split(".")[0]]
    return library.SyncByteStream, library.AsyncByteStream


_tees: dict[tuple[type, type], tuple[type, type]] = {}


def _tee_classes(response: Any) -> tuple[type, type]:
    bases = _stream_classes(response)
    found = _tees.get(bases)
    if found is None:
        sync_base, async_base = bases

        class SyncTee(sync_base):  # type: ignore[misc, valid-type]
            def __init__(self, inner: Any, exchange: Exchange) -> None:
                self._inner = inner
                self._exchange = exchange

            def __iter__(self) -> Any:
                exchange = self._exchange
                try:
                    for chunk in self._inner:
                        exchange.on_bytes(chunk)
                        yield chunk
                except BaseException as exc:
                    exchange.finish(ABANDONED if isinstance(exc, GeneratorExit) else describe(exc))
                    raise
                exchange.finish()

            def close(self) -> None:
                self._exchange.finish(ABANDONED)
                self._inner.close()

        class AsyncTee(async_base):  # type: ignore[misc, valid-type]
            def __init__(self, inner: Any, exchange: Exchange) -> None:
                self._inner = inner
                self._exchange = exchange

            async def __aiter__(self) -> Any:
                exchange = self._exchange
                try:
                    async for chunk in self._inner:
                        exchange.on_bytes(chunk)
                        yield chunk
                except BaseException as exc:
                    exchange.finish(ABANDONED if isinstance(exc, GeneratorExit) else describe(exc))
                    raise
                exchange.finish()

            async def aclose(self) -> None:
                self._exchange.finish(ABANDONED)
                await self._inner.aclose()

        found = _tees[bases] = (SyncTee, AsyncTee)
    return found


class Tap:
    """What a wrapped client captures: which protocols, as which provider, where to."""

    def __init__(
        self,
        provider: str,
        protocol_names: Collection[str],
        *,
        db: str | os.PathLike[str] | None = None,
        call_type: str | None = None,
    ) -> None:
        self.provider = provider
        self.protocols = {protocols.PROTOCOLS[name] for name in protocol_names}
        self.db = os.fspath(db) if db is not None else None
        self.call_type = call_type

    def begin(self, request: Any) -> Exchange | None:
        """An exchange for a request this tap captures, else ``None``; never raises."""
        try:
            if request.method != "POST":
                return None
            proto = protocols.for_path(request.url.path)
            if proto not in self.protocols:
                return None
            parsed = proto.parse_request(request.content)
            call = capture.start_call(call_type=self.call_type, db=self.db)
            return Exchange(self, proto, parsed, call)
        except Exception as exc:
            _failure("reading a wrapped request", exc)
            return None

    def attach(self, exchange: Exchange, response: Any, asynchronous: bool) -> Any:
        """Follow ``response``'s body; the response itself is returned unchanged."""
        try:
            exchange.on_response(response.status_code)
            if getattr(response, "is_stream_consumed", False) or getattr(response, "is_closed", False):
                exchange.on_bytes(response.content)
                exchange.finish()
                return response
            sync_tee, async_tee = _tee_classes(response)
            tee = (async_tee if asynchronous else sync_tee)(response.stream, exchange)
            # an answer dropped unread (never closed) is recorded when it is collected
            weakref.finalize(tee, exchange.finish, COLLECTED)
            response.stream = tee
        except Exception as exc:
            _failure("following a wrapped answer", exc)
        return response

    def sync_send(self, send: Callable[..., Any]) -> Callable[..., Any]:
        def wilson_send(request: Any, *args: Any, **kwargs: Any) -> Any:
            exchange = self.begin(request)
            if exchange is None:
                return send(request, *args, **kwargs)
            try:
                response = send(request, *args, **kwargs)
            except BaseException as exc:
                exchange.failed(exc)
                raise
            return self.attach(exchange, response, asynchronous=False)

        wilson_send.__wrapped__ = send  # type: ignore[attr-defined]
        return wilson_send

    def async_send(self, send: Callable[..., Any]) -> Callable[..., Any]:
        async def wilson_send(request: Any, *args: Any, **kwargs: Any) -> Any:
            exchange = self.begin(request)
            if exchange is None:
                return await send(request, *args, **kwargs)
            try:
                response = await send(request, *args, **kwargs)
            except BaseException as exc:
                exchange.failed(exc)
                raise
            return self.attach(exchange, response, asynchronous=True)

        wilson_send.__wrapped__ = send  # type: ignore[attr-defined]
        return wilson_send


def install(client: Any, tap: Tap) -> Any:
    """Capture what ``client`` (an SDK client) sends through its HTTP client; once per HTTP client."""
    http = getattr(client, "_client", None)
    if http is None or not hasattr(http, "send"):
        raise TypeError(f"{type(client).__name__} has no HTTP client to capture (is it an official SDK client?)")
    if getattr(http, "_wilson_tap", None) is not None:
        return client
    import inspect

    original = http.send
    wrapped = tap.async_send(original) if inspect.iscoroutinefunction(original) else tap.sync_send(original)
    http.send = wrapped
    http._wilson_tap = tap
    return client


def installed_tap(client: Any) -> Tap | None:
    return getattr(getattr(client, "_client", None), "_wilson_tap", None)
