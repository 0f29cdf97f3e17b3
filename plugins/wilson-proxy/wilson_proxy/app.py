"""Running the proxy: checks on the address and token, the event loop, a clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import frozen

from wilson_core.hosts import is_loopback

from .live import CHECK_S, LiveModel
from .recorder import Recorder
from .routes import RouteError, load_routes
from .server import ProxyServer
from .upstreams import Upstream

log = logging.getLogger("wilson.proxy")
RELOAD_CHECK_S = 1.0


class ProxyConfigError(ValueError):
    """A proxy setting that cannot be used (the message says why and what to do)."""


def check_binding(host: str, allow_remote: bool, token: str | None) -> None:
    """Loopback by default; any other address needs ``--allow-remote`` and a token."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise ProxyConfigError(
            f"--host {host} would let other machines use your API keys through this proxy; "
            "add --allow-remote (and --token) if that is what you want"
        )
    if not token or len(token) < 16:
        raise ProxyConfigError(
            f"--host {host} needs a token of at least 16 characters (--token or $WILSON_PROXY_TOKEN); "
            "clients then send it as X-Wilson-Token"
        )


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop where it is installed (about twice as fast), else asyncio's.

    ``WILSON_PROXY_LOOP=asyncio`` picks asyncio's own loop.
    """
    if os.environ.get("WILSON_PROXY_LOOP") == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


@frozen
class ProxySettings:
    upstreams: dict[str, Upstream]
    host: str = "127.0.0.1"
    port: int = 8787
    db: str | None = None
    token: str | None = None
    call_type: str = "agent"
    record: bool = True
    head_timeout: float = 600.0
    #: routes given as ``--route`` flags (kept across reloads)
    route_flags: tuple[str, ...] = ()
    #: the ``pyproject.toml`` whose ``[tool.wilson.proxy]`` routes are read, and re-read when it changes
    config: Path | None = None
    #: ``wilson serve``: the model name /v1/models lists
    served_model: str | None = None
    #: the longest answer a local model gives; a request asking more is refused (400)
    max_tokens_limit: int | None = None
    #: seconds between two reads of the registry's live model (``registry:live`` routes)
    live_check_s: float = CHECK_S


class RunningProxy:
    """A proxy running on its own thread (tests, the benchmark, ``wilson proxy`` itself)."""

    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.recorder = Recorder(settings.db) if settings.record else None
        self.server = ProxyServer(
            settings.upstreams,
            self.recorder.submit if self.recorder else None,
            token=settings.token,
            call_type=settings.call_type,
            head_timeout=settings.head_timeout,
            stats=self.recorder.stats if self.recorder else None,
        )
        self.server.served_model = settings.served_model
        self.server.max_tokens_limit = settings.max_tokens_limit
        self.server.set_routes(load_routes(settings.config, settings.route_flags))
        #: the registry's live model, for ``registry:live`` routes (:mod:`.live`)
        self.live = LiveModel(settings.db, settings.live_check_s)
        if self.server.uses_live():
            self.live.check_later().result()
            self.server.set_live(self.live.spec)
        self._config_stamp = self._stamp()
        self.reloads = 0
        self.loop = event_loop_factory()()
        self.port = 0
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Future[Any] | None = None

    @property
    def url(self) -> str:
        host = self.settings.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{'[' + shown + ']' if ':' in shown else shown}:{self.port}"

    async def _main(self) -> None:
        try:
            if self.recorder:
                await self.recorder.start()
            self.port = await self.server.start(self.settings.host.strip("[]"), self.settings.port)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            if self.recorder:
                await self.recorder.close()
            return
        self._stopped = self.loop.create_future()
        if self.settings.config is not None:
            self.loop.call_later(RELOAD_CHECK_S, self._watch)
        self.loop.call_later(self.live.check_s, self._watch_live)
        gc.freeze()  # what start-up made is never garbage: keep it out of every collection
        self._ready.set()
        await self._stopped
        await self.server.close()
        for model in self.server.local_models.values():
            model.close()
        self.live.close()
        if self.recorder:
            await self.recorder.close()

    def wait_recorded(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until every call so far is recorded; the recorder's counters (tests, benchmark)."""
        import time

        assert self.recorder is not None
        deadline = time.monotonic() + timeout
        while self.recorder.stats()["pending"] > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.recorder.stats()

    def run_forever(self, on_ready: Callable[[RunningProxy], None] | None = None) -> None:
        """Serve on this thread until SIGINT/SIGTERM (or :meth:`stop`), then drain the recorder."""
        asyncio.set_event_loop(self.loop)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self.loop.add_signal_handler(sig, self._request_stop)
                except (NotImplementedError, RuntimeError):
                    pass
            if hasattr(signal, "SIGHUP"):
                try:
                    self.loop.add_signal_handler(signal.SIGHUP, self.reload)
                except (NotImplementedError, RuntimeError):
                    pass
        if on_ready is not None:
            self.loop.call_soon(self._call_when_ready, on_ready)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()
        if self._error is not None:
            raise self._error

    def _stamp(self) -> tuple[float, int] | None:
        try:
            info = self.settings.config.stat() if self.settings.config else None
        except OSError:
            return None
        return (info.st_mtime, info.st_size) if info else None

    def _watch(self) -> None:
        stamp = self._stamp()
        if stamp != self._config_stamp:
            self._config_stamp = stamp
            self.reload()
        if self._stopped is not None and not self._stopped.done():
            self.loop.call_later(RELOAD_CHECK_S, self._watch)

    def _watch_live(self) -> None:
        self.check_live()
        if self._stopped is not None and not self._stopped.done():
            self.loop.call_later(self.live.check_s, self._watch_live)

    def check_live(self) -> None:
        """Read the registry's live model now, off the event loop (when a route serves it)."""
        if not self.server.uses_live():
            return
        loop = self.loop

        def checked(future: Any) -> None:
            if future.exception() is None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(self.server.set_live, self.live.spec)
                except RuntimeError:
                    pass  # the loop closed meanwhile

        try:
            self.live.check_later().add_done_callback(checked)
        except RuntimeError:
            pass  # shutting down

    def reload(self) -> bool:
        """Read the routes again (on the event loop: between two requests); keep the old ones on error."""
        try:
            routes = load_routes(self.settings.config, self.settings.route_flags)
        except RouteError as exc:
            log.error("routes not reloaded, the old ones stay: %s", exc)
            return False
        self.server.set_routes(routes)
        self.check_live()  # a reload (SIGHUP) also reads the registry's live model at once
        self.reloads += 1
        log.warning("routes reloaded from %s: %s", self.settings.config,
                    ", ".join(f"{r.name} ({r.mode})" for r in routes) or "none")
        return True

    def _call_when_ready(self, on_ready: Callable[[RunningProxy], None]) -> None:
        if self._ready.is_set():
            if self._error is None:
                on_ready(self)
        else:
            self.loop.call_later(0.01, self._call_when_ready, on_ready)

    def _request_stop(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def start(self) -> RunningProxy:
        """Serve on a background thread; return once listening."""
        self._thread = threading.Thread(target=self._thread_main, name="wilson-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def _thread_main(self) -> None:
        try:
            self.run_forever()
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    def stop(self) -> None:
        """Finish calls in flight, close, record everything queued."""
        if self._thread is None:
            return
        try:
            self.loop.call_soon_threadsafe(self._request_stop)
        except RuntimeError:
            pass  # the loop is already closed
        self._thread.join(60)
        self._thread = None

    def __enter__(self) -> RunningProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def print_banner(proxy: RunningProxy, echo: Callable[[str], None], title: str = "Wilson proxy") -> None:
    url = proxy.url
    settings = proxy.settings
    target = settings.db or os.environ.get("WILSON_DB") or "~/.wilson/data.db"
    echo(f"{title} on {url}" + (f", recording into {target}" if settings.record else " (not recording)"))
    for protocol, variable, suffix in (
        ("openai", "OPENAI_BASE_URL", "/v1"),
        ("anthropic", "ANTHROPIC_BASE_URL", ""),
        ("ollama", "OLLAMA_HOST", ""),
    ):
        upstream = settings.upstreams.get(protocol)
        where = upstream.url if upstream is not None else (settings.served_model or "-")
        echo(f"  {protocol:<9} {variable}={url}{suffix}   -> {where}")
    for route in proxy.server.routes if settings.served_model is None else ():
        echo(f"  route {route.name}: {route.mode} -> {route.provider} for {route.describe()}")
    if settings.config is not None and settings.served_model is None:
        echo(f"  routes are re-read when {settings.config} changes (or on SIGHUP)")
    if settings.token:
        echo("  clients must send the header X-Wilson-Token")
    echo("Press Ctrl-C to stop.")
    sys.stdout.flush()
