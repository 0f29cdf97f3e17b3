"""Capture an app's ``anthropic`` SDK calls without changing its code.

    from wilson_core.integrations.anthropic import Anthropic   # instead of: from anthropic import Anthropic
    client = Anthropic()

    from wilson_core.integrations.anthropic import wrap
    client = wrap(anthropic.AsyncAnthropic(), db="traffic.db")

Captured: ``messages.create`` (with and without ``stream=True``) and
``messages.stream``, sync and async.  ``system``, ``tool_use`` and
``tool_result`` blocks are stored in the same shape as OpenAI traffic, so
exports come out alike; a ``tool_result`` in the next request is recorded as
the result of its ``tool_use`` (with ``is_error`` kept).
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import anthropic as _anthropic

from wilson_core.integrations._http import Tap, install

__all__ = ["Anthropic", "AsyncAnthropic", "wrap"]

PROTOCOLS = ("anthropic",)
Client = TypeVar("Client")


def wrap(
    client: Client,
    *,
    db: str | os.PathLike[str] | None = None,
    call_type: str | None = None,
    provider: str = "anthropic",
) -> Client:
    """Capture every messages call of ``client`` (returned, changed in place); see
    :func:`wilson_core.integrations.openai.wrap` for the options."""
    return install(client, Tap(provider, PROTOCOLS, db=db, call_type=call_type))


class Anthropic(_anthropic.Anthropic):
    """``anthropic.Anthropic`` whose calls are captured."""

    def __init__(self, *args: Any, wilson_db: str | os.PathLike[str] | None = None,
                 wilson_call_type: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        wrap(self, db=wilson_db, call_type=wilson_call_type)


class AsyncAnthropic(_anthropic.AsyncAnthropic):
    """``anthropic.AsyncAnthropic`` whose calls are captured."""

    def __init__(self, *args: Any, wilson_db: str | os.PathLike[str] | None = None,
                 wilson_call_type: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        wrap(self, db=wilson_db, call_type=wilson_call_type)
