"""Capture an app's ``openai`` SDK calls without changing its code.

    from wilson_core.integrations.openai import OpenAI        # instead of: from openai import OpenAI
    client = OpenAI()                                          # same arguments, same API, same types

    from wilson_core.integrations.openai import wrap
    client = wrap(openai.OpenAI(), db="traffic.db")            # an existing client (sync or async)

Captured: ``chat.completions.create`` (with and without ``stream=True``, tools,
parallel tool calls) and ``responses.create`` (streamed or not), sync and
async, and the helpers built on them (``chat.completions.stream``,
``.parse``, ``responses.stream``, ``with_raw_response``).  Group calls with
``with wilson_core.run(call_type="agent"):``; tool results are recorded from
the ``role: "tool"`` messages (``function_call_output`` items) of the next
request.  See :mod:`wilson_core.integrations._http` for how and when.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import openai as _openai

from wilson_core.integrations._http import Tap, install

__all__ = ["AsyncOpenAI", "OpenAI", "wrap"]

PROTOCOLS = ("openai-chat", "openai-responses")
Client = TypeVar("Client")


def wrap(
    client: Client,
    *,
    db: str | os.PathLike[str] | None = None,
    call_type: str | None = None,
    provider: str = "openai",
) -> Client:
    """Capture every chat-completions and Responses call of ``client`` (returned, changed in place).

    :param db: the database to write to (default ``$WILSON_DB`` / ``~/.wilson/data.db``,
        or the current run's).
    :param call_type: the call type of calls outside a run (default ``agent``).
    :param provider: the provider name stored with each call.

    Wrapping twice (or a copy made with ``with_options``, which shares the HTTP
    client) captures once.
    """
    return install(client, Tap(provider, PROTOCOLS, db=db, call_type=call_type))


class OpenAI(_openai.OpenAI):
    """``openai.OpenAI`` whose calls are captured (``wilson_db``, ``wilson_call_type``: see :func:`wrap`)."""

    def __init__(self, *args: Any, wilson_db: str | os.PathLike[str] | None = None,
                 wilson_call_type: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        wrap(self, db=wilson_db, call_type=wilson_call_type)


class AsyncOpenAI(_openai.AsyncOpenAI):
    """``openai.AsyncOpenAI`` whose calls are captured (see :class:`OpenAI`)."""

    def __init__(self, *args: Any, wilson_db: str | os.PathLike[str] | None = None,
                 wilson_call_type: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        wrap(self, db=wilson_db, call_type=wilson_call_type)
