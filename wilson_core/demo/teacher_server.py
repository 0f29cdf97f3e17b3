"""The demo's cloud model as a real server: an OpenAI-compatible endpoint on 127.0.0.1.

There is no network here, so the "cloud" the finance app calls is a local HTTP
server that speaks the OpenAI chat-completions protocol (and the others
:mod:`wilson_core.testing.upstreams` speaks), streamed or not, with tool calls,
usage and SSE chunks cut as a hosted API cuts them.  What it answers is the
teacher of :mod:`.teacher`: right most of the time, wordy or wrong now and then.

    with TeacherServer(seed=0) as cloud:
        client = openai.OpenAI(base_url=cloud.openai_url, api_key="demo")

Answers follow the order requests arrive in (one at a time), so that a seed
gives the same answers to an app that sends its calls in the same order.
``max_tokens`` is not enforced (the teacher's answers are a sentence at most);
token counts are estimated at four characters a token.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from wilson_core.testing.upstreams import FakeUpstream, Scripted

from .teacher import teacher

#: the model name the finance app asks for (the server answers as whatever model is named)
MODEL = "cloud-teacher"
#: characters per streamed text delta (hosted APIs send a token or a few per chunk)
FRAGMENT = 4


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation of a chat-completions (or Anthropic / Ollama) request; Responses ``input`` too."""
    messages = request.get("messages")
    if messages is None:
        given = request.get("input")
        messages = given if isinstance(given, list) else [{"role": "user", "content": str(given or "")}]
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


class TeacherServer:
    """The cloud teacher behind a real HTTP server on a free port of 127.0.0.1."""

    def __init__(self, seed: int = 0) -> None:
        self._answer = teacher(seed)
        self._lock = threading.Lock()
        self._server = FakeUpstream(responder=self._respond)
        self.answered = 0

    def _respond(self, request: Any) -> Scripted:
        if not isinstance(request, dict):
            return Scripted(status=400, error="the request body must be a JSON object")
        messages = _messages(request)
        if not messages:
            return Scripted(status=400, error="the request has no messages")
        tools = request.get("tools") or None
        with self._lock:  # one teacher, one random stream: answers in the order calls arrive
            reply = self._answer(messages, tools)
            self.answered += 1
        prompt = sum(_tokens(json.dumps(m.get("content") or "")) for m in messages)
        if isinstance(reply, str):
            return Scripted(text=reply, input_tokens=prompt, output_tokens=_tokens(reply), fragment=FRAGMENT)
        calls = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in reply.get("tool_calls", [])]
        text = reply.get("content")
        out = _tokens((text or "") + json.dumps(calls))
        return Scripted(text=text, tool_calls=calls, input_tokens=prompt, output_tokens=out, fragment=FRAGMENT)

    # -- life cycle
    def start(self) -> TeacherServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> TeacherServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._server.url

    @property
    def openai_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``base_url`` of the OpenAI SDK (``OPENAI_BASE_URL``)."""
        return self._server.openai_url
