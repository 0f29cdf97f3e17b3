"""Sending captured records to the sinks, each on its own: one that fails is counted and skipped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from wilson_core import plugins

log = logging.getLogger("wilson.capture")

_lock = threading.Lock()
_failures = 0

#: called with no arguments after a sink failure (e.g. the facade's per-LLM counter).
FailureCounter = Callable[[], None]


def call_isolated(hook_name: str, failed: Callable[[str, BaseException], None], **kwargs: Any) -> None:
    """Call every implementation of a broadcast hook on its own; report, never raise."""
    caller = getattr(plugins.hook(), hook_name)
    for impl in caller.get_hookimpls():
        try:
            impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception as exc:
            failed(impl.plugin_name, exc)


def capture_failures() -> int:
    """How many sink failures this process has had (all capture paths together)."""
    return _failures


def _count_failure(count: FailureCounter | None) -> None:
    global _failures
    with _lock:
        _failures += 1
    if count is not None:
        count()


def _report(
    record: Any, db_path: str | None, count: FailureCounter | None, sink: str, error: BaseException
) -> None:
    """One sink failed on ``record``: count it, warn, and tell ``wilson_capture_failed``."""
    _count_failure(count)
    log.warning("capture sink %r failed: %s: %s", sink, type(error).__name__, error)
    call_isolated("wilson_capture_failed", lambda *_: None, record=record, sink=sink, error=error, db_path=db_path)


def emit(hook_name: str, record: Any, *, db_path: str | None, count: FailureCounter | None = None, **kwargs: Any) -> None:
    """Send ``record`` to every implementation of ``hook_name`` (``wilson_capture_interaction``,
    ``wilson_capture_tool_result``, ``wilson_run_started``, ``wilson_run_finished``).

    A failing implementation is counted (and ``count`` called), warned about,
    reported through ``wilson_capture_failed`` and skipped; nothing is raised.
    """
    # (:func:`call_isolated` inlined: this runs on every captured call, and a failure
    # handler is only made when a sink fails)
    kwargs["db_path"] = db_path
    for impl in getattr(plugins.hook(), hook_name).get_hookimpls():
        try:
            impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception as exc:
            _report(record, db_path, count, impl.plugin_name, exc)


def _internal_failure(what: str, error: BaseException, count: FailureCounter | None = None) -> None:
    """A failure of the capture code itself (not a sink): counted and warned, never raised."""
    _count_failure(count)
    log.warning("capture failed (%s): %s: %s", what, type(error).__name__, error)

