"""Exceptions with messages meant for people (the CLI prints them without a traceback)."""

from __future__ import annotations


class WilsonError(Exception):
    """Base class: a problem the user can fix; the CLI shows the message and exits non-zero."""

    exit_code = 1


class RecordError(WilsonError, ValueError):
    """Data that does not fit a record (bad JSON, wrong types, unknown keys)."""


class PluginError(WilsonError):
    """A plugin or driver could not be found or loaded."""


class StoreError(WilsonError):
    """The database cannot be opened or used (corrupt file, wrong path)."""


class NotFound(WilsonError):
    """An id that is not in the store."""


class AnnotationRefused(WilsonError):
    """An annotation that would be wrong (bad star value, mismatched pair, ...); nothing was written."""


class ProviderError(WilsonError):
    """An LLM provider failed (network, HTTP error, bad response)."""


class ParameterError(ProviderError):
    """A request refused for what it asks: a parameter of the wrong type or out of range, a
    schema or tool choice that cannot be honoured, a prompt longer than the model's context.

    The caller's fault, not the provider's: servers (``wilson serve``, the proxy's local
    routes) answer it with HTTP 400 in the client's protocol.  ``param`` names the request
    field (dotted for nested ones) when there is one.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def parameter_error(exc: BaseException | None) -> ParameterError | None:
    """The :class:`ParameterError` behind ``exc`` (itself, or its ``__cause__`` chain), if any."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, ParameterError):
            return exc
        exc, seen = exc.__cause__, seen + 1
    return None
