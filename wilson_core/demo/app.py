"""The demo's finance app, written as a real app is: the official ``openai`` SDK, nothing of Wilson's.

Its two jobs are :func:`categorise` (one call per bank transaction; the ones a
user watches are streamed) and :func:`ask` (an agent: streamed turns, tools run
by the app, their results sent back as ``role: "tool"`` messages).  Which
server answers, and who records the calls, is deployment configuration, made
by :func:`connect`:

- ``connect(cloud_url, capture_db=db)``: Wilson's drop-in client
  (:mod:`wilson_core.integrations.openai`) records every call in-process;
- ``connect(proxy_url)``: the plain SDK client talks to ``wilson proxy``, which
  records the calls and, by its routes, decides who answers them.

The app's code is the same either way.  Headers ``X-Wilson-Call-Type`` and
``X-Wilson-Run-Id`` tell the proxy what a call is; any other server ignores them.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, NamedTuple

from wilson_core.errors import WilsonError

from . import agent, finance
from .teacher_server import MODEL

#: the API key the app sends (the demo's servers need none; the proxy passes it upstream untouched)
API_KEY = "sk-demo-not-a-real-key"
#: a category is one word: a sane cap for the categoriser's answers
CATEGORY_MAX_TOKENS = 24


class Clients(NamedTuple):
    """The app's two OpenAI clients: the categoriser's and the assistant's."""

    categoriser: Any
    assistant: Any

    def close(self) -> None:
        self.categoriser.close()
        self.assistant.close()


class Turn(NamedTuple):
    """One streamed assistant turn, assembled by the app."""

    text: str
    tool_calls: list[dict[str, Any]]  # OpenAI's shape: {"id", "type", "function": {"name", "arguments"}}

    @property
    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message


def require_sdk() -> None:
    """The app needs the ``openai`` SDK (an optional extra of wilson-core)."""
    if importlib.util.find_spec("openai") is None:
        raise WilsonError(
            "the demo's finance app calls its cloud model with the official openai SDK, which is not "
            "installed: pip install 'wilson-core[openai]' (nox -s demo installs it)"
        )


def connect(base_url: str, *, capture_db: str | os.PathLike[str] | None = None, timeout: float = 120.0) -> Clients:
    """The app's clients for ``base_url`` (``.../v1``); with ``capture_db``, Wilson's recording client."""
    require_sdk()
    if capture_db is None:
        from openai import OpenAI

        def make(call_type: str) -> Any:
            return OpenAI(base_url=base_url, api_key=API_KEY, timeout=timeout,
                          default_headers={"X-Wilson-Call-Type": call_type})
    else:
        from wilson_core.integrations.openai import OpenAI as WilsonOpenAI

        def make(call_type: str) -> Any:
            return WilsonOpenAI(base_url=base_url, api_key=API_KEY, timeout=timeout,
                                default_headers={"X-Wilson-Call-Type": call_type},
                                wilson_db=capture_db, wilson_call_type=call_type)

    return Clients(categoriser=make("categorize"), assistant=make("agent"))


def categorise(client: Any, line: str, *, stream: bool = False) -> str:
    """The category of one statement line, as the model answers it (streamed when a user watches).

    The request carries the app's structured-output constraint (``guided_choice``, the
    category enum, in the body as OpenAI-compatible servers such as vLLM take it): a local
    model enforces it while decoding; the cloud teacher is only told in the prompt.
    """
    request: dict[str, Any] = {"model": MODEL, "messages": finance.categorise_messages(line),
                               "temperature": 0.0, "max_tokens": CATEGORY_MAX_TOKENS,
                               "extra_body": dict(finance.CATEGORISE_PARAMS)}
    if not stream:
        completion = client.chat.completions.create(**request)
        return completion.choices[0].message.content or ""
    pieces = []
    chunks = client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True})
    with chunks:
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    return "".join(pieces)


def ask(client: Any, question: str, *, max_turns: int = 4) -> str:
    """One agent run: the model calls the app's tools until it answers in words (every turn streamed)."""
    import wilson_core

    with wilson_core.run(call_type="agent") as run:
        headers = {"X-Wilson-Run-Id": run.id}
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": agent.AGENT_SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]
        turn = _streamed_turn(client, messages, headers)
        for _ in range(max_turns):
            if not turn.tool_calls:
                break
            messages.append(turn.message)
            for call in turn.tool_calls:
                name = call["function"]["name"]
                try:
                    arguments = json.loads(call["function"]["arguments"] or "{}")
                    result: Any = agent.run_tool(name, arguments)
                except (ValueError, KeyError) as exc:  # a model's bad call: tell it, as apps do
                    result = {"error": str(exc)}
                # recorded by Wilson from the next request (no record_tool_result call needed)
                messages.append(agent.tool_message(call["id"], name, result))
            turn = _streamed_turn(client, messages, headers)
        return turn.text


def _streamed_turn(client: Any, messages: list[dict[str, Any]], headers: dict[str, str]) -> Turn:
    """One streamed chat completion, its text and tool calls joined from the deltas."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    stream = client.chat.completions.create(model=MODEL, messages=messages, tools=agent.TOOLS, stream=True,
                                            stream_options={"include_usage": True}, extra_headers=headers)
    with stream:
        for chunk in stream:
            if not chunk.choices:
                continue  # the usage-only last chunk
            delta = chunk.choices[0].delta
            if delta.content:
                text.append(delta.content)
            for piece in delta.tool_calls or ():
                call = calls.setdefault(piece.index, {"id": "", "type": "function",
                                                      "function": {"name": "", "arguments": ""}})
                if piece.id:
                    call["id"] = piece.id
                if piece.function and piece.function.name:
                    call["function"]["name"] = piece.function.name
                if piece.function and piece.function.arguments:
                    call["function"]["arguments"] += piece.function.arguments
    return Turn("".join(text), [calls[i] for i in sorted(calls)])
