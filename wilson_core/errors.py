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
