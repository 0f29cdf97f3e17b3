"""Routes to the registry's live model: ``provider = "registry:live"``.

A route whose provider is :data:`LIVE` is answered by whichever model the model
registry (:mod:`wilson_core.store.registry`) says is live, in the proxy's own
database: its deployment (llama.cpp, ONNX or Ollama) or, when it was not deployed,
``transformers:`` on its training folder.  ``wilson models promote`` / ``rollback``
or a pipeline's gate switch the traffic, with no restart of the proxy or the app.

The request path never reads the database: :class:`LiveModel` keeps the resolved
provider in memory.  A background check (on a thread of its own, every
``check_s`` seconds, and at once on a reload) reads the registry's live *version*
(one small query: the live model, since when, its newest deployment) and resolves
the provider again only when that changed.  Calls already queued on the old model
are answered by it; the next call goes to the new one.  While no model is live, a
``registry:live`` route matches nothing, so its calls go upstream.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger("wilson.proxy")

#: the route provider that names the registry's live model
LIVE = "registry:live"
#: seconds between two checks of the registry by default
CHECK_S = 2.0


class LiveModel:
    """The provider spec of the registry's live model, refreshed off the request path.

    :param db: the Wilson database (path or PostgreSQL URL; ``None``: ``$WILSON_DB`` or the default).
    """

    def __init__(self, db: str | None, check_s: float = CHECK_S) -> None:
        self.db = db
        self.check_s = check_s
        #: ``NAME:MODEL`` of the live model (``None``: none is live, or the registry cannot be read yet)
        self.spec: str | None = None
        #: the live model's registry id
        self.model_id: str | None = None
        self.version: tuple[Any, ...] | None = None
        #: why the last check failed (the last known model keeps serving), else ``None``
        self.error: str | None = None
        self.checks = 0
        self.switches = 0
        self._registry: Any = None
        self._store: Any = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wilson-live-model")

    def check_later(self) -> Future[bool]:
        """Run :meth:`check` on the resolver's thread (the database connection stays there)."""
        return self._executor.submit(self.check)

    def check(self) -> bool:
        """Read the registry's live version; resolve the provider again when it changed.

        Returns ``True`` when the live provider changed.  A failure (database gone,
        locked too long) is logged and keeps the last known model.
        """
        with self._lock:
            try:
                registry = self._open()
                version = registry.live_version()
                if self.checks and version == self.version:
                    self.checks += 1
                    return False
                spec = registry.live_provider() if version is not None else None
            except Exception as exc:  # the registry cannot be read now: keep serving what was live
                message = f"{type(exc).__name__}: {exc}"
                if message != self.error:
                    log.warning("cannot read the live model from the registry (the last one stays): %s", message)
                self.error = message
                self._close_store()
                return False
            self.error = None
            self.checks += 1
            changed = spec != self.spec
            self.version, self.model_id = version, (version[0] if version is not None else None)
            if changed:
                if self.spec is not None or spec is not None:
                    self.switches += 1
                    log.warning("live model: %s (%s)", self.model_id or "none", spec or "calls go upstream")
                self.spec = spec
            return changed

    def describe(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "provider": self.spec, "checks": self.checks,
                "switches": self.switches, "error": self.error, "check_s": self.check_s}

    def _open(self) -> Any:
        if self._registry is None:
            from wilson_core.store import open_store
            from wilson_core.store.registry import Registry

            self._store = open_store(self.db)
            self._registry = Registry(self._store)
        return self._registry

    def _close_store(self) -> None:
        store, self._store, self._registry = self._store, None, None
        if store is not None:
            try:
                store.close()
            except Exception:
                pass

    def close(self) -> None:
        def shut() -> None:
            with self._lock:
                self._close_store()

        try:
            self._executor.submit(shut)
        except RuntimeError:
            return  # already closed
        self._executor.shutdown(wait=False)
