"""Wilson's records: frozen attrs classes, changed only with ``attrs.evolve``.

Messages are kept as plain dicts in the chat format HuggingFace chat templates
and TRL use (``{"role": ..., "content": ..., "tool_calls": [...]}``, with tool
call arguments as dicts).  Everything else is a record.  Records are turned
into JSON and SQLite rows only by :mod:`wilson_core.converter`.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import Any

from attrs import field, frozen

from .text import clean_dict, clean_json, is_clean, optional_text, text_field

#: The call types Wilson's seed app uses; ``call_type`` is free text.
DEFAULT_CALL_TYPES = ("agent", "summarize", "relevance", "categorize")

STATUS_OK = "ok"
STATUS_ERROR = "error"
#: a streamed call the app abandoned (break, exception, cancellation, dropped connection).
STATUS_INCOMPLETE = "incomplete"

PREFERENCES = ("chosen", "rejected", "neutral")
ANNOTATION_SOURCES = ("human", "judge", "import", "rule")


def new_id() -> str:
    """A fresh unique id: 32 hex digits, time-ordered like a UUIDv7.

    48 bits of milliseconds since the epoch, then 80 random bits.  Ids made
    later sort later, so inserts land at the end of the id indexes instead of
    on random pages (fewer pages written per capture).
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


#: (second since the epoch, its text up to the seconds): formatted once per second.
_second: tuple[int, str] = (-1, "")


def utcnow() -> str:
    """The current UTC time as an ISO-8601 string with microseconds.

    The same text as ``datetime.now(timezone.utc).isoformat(timespec="microseconds")``
    (microseconds truncated like ``datetime.now``), with the date and time of day
    formatted once per second: every captured call takes one or two.
    """
    global _second
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    second, text = _second
    if second != seconds:
        text = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (seconds, text)
    return f"{text}.{nanos // 1000:06d}+00:00"


def _tupled(value: Any) -> tuple:
    return tuple(value) if value is not None else ()


# -- the text boundary (:mod:`wilson_core.text`) as attrs converters --------
# Every text and JSON field of every record is cleaned when the record is made
# (by the facade, a wrapper, the proxy, an importer, the CLI, the dashboard or
# the converter), so nothing that cannot be stored reaches a store or a spool.


def _json_items(value: Any) -> tuple:
    """A tuple of JSON values (messages, tool schemas), each cleaned."""
    if value is None:
        return ()
    items = tuple(value)
    if is_clean(items):  # the common case: one read-only pass over all of them
        return items
    return tuple(clean_json(item) for item in items)


#: tool lists found clean lately: an app sends the same tools on every call, and comparing
#: with ``==`` (done in C, all the way down) is much cheaper than walking them again.
_clean_tools: list[tuple] = []


def _tools(value: Any) -> tuple:
    """Tool schemas (:func:`_json_items`), with the app's repeated tool list recognised."""
    if value is None or not value:
        return ()
    items = tuple(value)
    for known in _clean_tools:
        if items == known:
            return items
    items = _json_items(items)
    if len(_clean_tools) >= 8:
        del _clean_tools[0]
    _clean_tools.append(items)
    return items


def _texts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)):
        value = (value,)
    return tuple(text_field(item) for item in value)


def _count(value: Any) -> int | None:
    """A token count SQLite can store (a 64-bit integer), else ``None``."""
    if value is None or type(value) is int and -(2**63) <= value < 2**63:
        return value
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if -(2**63) <= number < 2**63 else None


@frozen
class ToolCall:
    """One tool call requested by the model.

    ``arguments`` is always a dict.  When a provider returned arguments that
    are not valid JSON, ``arguments`` is empty and ``raw_arguments`` keeps the
    text exactly as it came, so nothing is lost and the parse error is visible.
    """

    id: str = field(converter=text_field)
    name: str = field(converter=text_field)
    arguments: dict[str, Any] = field(factory=dict, converter=clean_dict)
    raw_arguments: str | None = field(default=None, converter=optional_text)

    @property
    def malformed(self) -> bool:
        return self.raw_arguments is not None


@frozen
class ToolResult:
    """The result of executing one tool call, linked to the interaction that asked for it."""

    tool_call_id: str = field(converter=text_field)
    name: str = field(converter=text_field)
    content: str = field(converter=text_field)
    arguments: dict[str, Any] = field(factory=dict, converter=clean_dict)
    is_error: bool = False
    duration_ms: float | None = None
    interaction_id: str | None = field(default=None, converter=optional_text)
    id: str = field(factory=new_id, converter=text_field)
    created_at: str = field(factory=utcnow, converter=text_field)


@frozen
class Interaction:
    """One LLM call, successful or not, with everything needed to train on it."""

    run_id: str = field(converter=text_field)
    sequence_num: int = field(converter=lambda value: _count(value) or 0)
    call_type: str = field(converter=text_field)
    provider: str = field(converter=text_field)
    model: str = field(converter=text_field)
    messages: tuple[dict[str, Any], ...] = field(converter=_json_items)
    response_content: str | None = field(default=None, converter=optional_text)
    tool_calls: tuple[ToolCall, ...] = field(default=(), converter=_tupled)
    tools: tuple[dict[str, Any], ...] = field(default=(), converter=_tools)
    params: dict[str, Any] = field(factory=dict, converter=clean_dict)
    input_tokens: int | None = field(default=None, converter=_count)
    output_tokens: int | None = field(default=None, converter=_count)
    total_tokens: int | None = field(default=None, converter=_count)
    duration_ms: float = 0.0
    #: time to first token (streamed calls), ``None`` when not streamed or unknown.
    ttft_ms: float | None = None
    status: str = field(default=STATUS_OK, converter=text_field)
    error: str | None = field(default=None, converter=optional_text)
    id: str = field(factory=new_id, converter=text_field)
    created_at: str = field(factory=utcnow, converter=text_field)

    @property
    def system_prompt(self) -> str | None:
        """The first system message's text, as Wilson's ``system_prompt`` column."""
        for message in self.messages:
            if message.get("role") == "system":
                return message.get("content")
        return None

    @property
    def user_prompt(self) -> str | None:
        """The last user message's text, as Wilson's ``user_prompt`` column."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else None
        return None

    def answer_message(self, content: str | None = None) -> dict[str, Any]:
        """The assistant message this call produced (``content`` overrides the text)."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.response_content if content is None else content,
        }
        if self.tool_calls and content is None:
            message["tool_calls"] = [tool_call_message(c) for c in self.tool_calls]
        return message


def tool_call_message(call: ToolCall) -> dict[str, Any]:
    """A tool call in the chat-template shape (arguments as a dict)."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": dict(call.arguments)},
    }


@frozen
class Run:
    """A sequence of calls that belong together (an agent run)."""

    call_type: str = field(converter=text_field)
    id: str = field(factory=new_id, converter=text_field)
    started_at: str = field(factory=utcnow, converter=text_field)
    ended_at: str | None = field(default=None, converter=optional_text)
    metadata: dict[str, Any] = field(factory=dict, converter=clean_dict)
    deleted: bool = False


@frozen
class Annotation:
    """One label version for one interaction by one annotator.

    Annotations are append-only: a new version supersedes the previous one for
    the same (interaction, annotator, source).  Fields left as ``None`` on a new
    version are carried over from the previous one by the store, so setting a
    star never wipes the notes.
    """

    interaction_id: str = field(converter=text_field)
    rating: int | None = None
    preference: str | None = field(default=None, converter=optional_text)
    pair_id: str | None = field(default=None, converter=optional_text)
    tags: tuple[str, ...] = field(default=(), converter=_texts)
    notes: str | None = field(default=None, converter=optional_text)
    corrected_response: str | None = field(default=None, converter=optional_text)
    source: str = field(default="human", converter=text_field)
    annotator: str = field(default="local", converter=text_field)
    #: ``accepted`` for labels that count; ``proposed`` / ``rejected`` for judge proposals.
    status: str = field(default="accepted", converter=text_field)
    version: int = 1
    id: str = field(factory=new_id, converter=text_field)
    created_at: str = field(factory=utcnow, converter=text_field)


@frozen
class ProviderResponse:
    """What a provider driver returns for one chat call."""

    content: str | None = field(converter=optional_text)
    tool_calls: tuple[ToolCall, ...] = field(default=(), converter=_tupled)
    input_tokens: int | None = field(default=None, converter=_count)
    output_tokens: int | None = field(default=None, converter=_count)
    model: str | None = field(default=None, converter=optional_text)
    raw: dict[str, Any] | None = None


@frozen
class Reply:
    """What the facade returns to the app for one call."""

    content: str | None
    tool_calls: tuple[ToolCall, ...]
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    duration_ms: float
    interaction_id: str
    run_id: str
    model: str
    provider: str

    @property
    def text(self) -> str:
        return self.content or ""

    @property
    def message(self) -> dict[str, Any]:
        """The reply as an assistant message, ready to append to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [tool_call_message(c) for c in self.tool_calls]
        return message
