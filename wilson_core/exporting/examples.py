"""Training examples: what the selection hands to an exporter.

An :class:`Example` is format-neutral: the messages before the target
(``prompt``), the target assistant message(s) (``completion``), and for
preference data the ``rejected`` answer or the ``label``.  Messages are in
the chat-template shape TRL uses: tool call arguments as dicts, tool messages
with ``name`` and ``tool_call_id``, text content as strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attrs import field, frozen

ANSWER = "answer"  # a rated or unrated answer (SFT)
PAIR = "pair"  # chosen vs rejected answer to one context (DPO)
RATED = "rated"  # one answer labelled desirable or not (KTO)


def _tupled(value: Any) -> tuple:
    if type(value) is tuple:
        return value
    return tuple(value) if value is not None else ()


@frozen
class Example:
    """One training example, before an exporter shapes it into a line."""

    kind: str
    prompt: tuple[dict[str, Any], ...] = field(converter=_tupled)
    completion: tuple[dict[str, Any], ...] = field(converter=_tupled)
    tools: tuple[dict[str, Any], ...] = field(default=(), converter=_tupled)
    rejected: tuple[dict[str, Any], ...] = field(default=(), converter=_tupled)
    label: bool | None = None
    rating: int | None = None
    #: the interactions this example was built from (chosen first for pairs).
    interaction_ids: tuple[str, ...] = field(default=(), converter=_tupled)
    run_id: str = ""
    #: where the target came from: ``answer``, ``correction``, ``pair:<source>``, ``harvested``.
    origin: str = ANSWER
    call_type: str = ""
    model: str = ""
    provider: str = ""
    tags: tuple[str, ...] = field(default=(), converter=_tupled)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The whole conversation: prompt followed by the completion."""
        return [*self.prompt, *self.completion]


class MalformedExample(Exception):
    """Raised while building an example that cannot be trained on (reason in ``args[0]``)."""


def text(value: Any) -> str:
    """Message content as text: ``None`` is empty, structured content is JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    """One tool call in TRL's shape, from the stored or OpenAI shape.

    :raises MalformedExample: the model's arguments were not a JSON object.
    """
    function = call.get("function") if isinstance(call.get("function"), Mapping) else call
    name = function.get("name")
    if function.get("raw_arguments") is not None or call.get("raw_args") is not None:
        raise MalformedExample("malformed_tool_call")
    arguments = function.get("arguments", function.get("args"))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            raise MalformedExample("malformed_tool_call") from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict) or not isinstance(name, str) or not name:
        raise MalformedExample("malformed_tool_call")
    result: dict[str, Any] = {"id": str(call["id"])} if call.get("id") else {}
    result["type"] = "function"
    result["function"] = {"name": name, "arguments": arguments}
    return result


def assistant_message(content: Any, calls: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text(content)}
    if calls:
        message["tool_calls"] = [tool_call(c) for c in calls]
    return message


def tool_message(name: str, content: Any, tool_call_id: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "tool", "name": name, "content": text(content)}
    if tool_call_id:
        message["tool_call_id"] = tool_call_id
    return message


def normalize(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stored messages in the exported shape: known keys only, names on tool messages.

    A tool message without ``name`` gets the name of the tool call it answers.
    """
    result: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for message in messages:
        role = message.get("role")
        if len(message) == 2 and (role == "user" or role == "system") and isinstance(message.get("content"), str):
            result.append(message)  # already in shape: the common case, kept as it is
            continue
        if role == "assistant":
            out = assistant_message(message.get("content"), message.get("tool_calls") or ())
            for call in out.get("tool_calls", ()):
                if "id" in call:
                    call_names[call["id"]] = call["function"]["name"]
        elif role == "tool":
            call_id = message.get("tool_call_id")
            name = message.get("name") or call_names.get(call_id or "", "") or "tool"
            out = tool_message(name, message.get("content"), call_id)
        else:
            out = {"role": str(role), "content": message.get("content")}
            if not isinstance(out["content"], list):
                out["content"] = text(out["content"])
        result.append(out)
    return result


def message_key(message: Mapping[str, Any]) -> str:
    """What makes two messages the same turn (ids and key order do not count)."""
    calls = [
        (c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", ())
    ]
    return json.dumps(
        [message.get("role"), message.get("content") or "", calls, message.get("tool_call_id")],
        sort_keys=True,
        ensure_ascii=False,
    )


def merge_run(
    steps: Sequence[tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]],
) -> list[dict[str, Any]]:
    """One conversation from a run's calls, each turn once.

    ``steps`` are ``(context, answer, tool_messages)`` per call in order, where
    ``tool_messages`` are the results the app recorded for the answer's tool
    calls.  A call whose context already holds the conversation so far (the
    usual agent loop) extends it; turns the app did not paste back are kept
    once, and recorded tool results are added only where the next context
    does not already carry them.
    """
    conversation: list[dict[str, Any]] = []
    keys: list[str] = []
    pending: list[dict[str, Any]] = []
    for context, answer, tool_messages in steps:
        context_keys = [message_key(m) for m in context]
        common = 0
        while (
            common < len(keys) and common < len(context_keys) and keys[common] == context_keys[common]
        ):
            common += 1
        new = context[common:]
        new_keys = context_keys[common:]
        if common == len(keys):  # the context extends the conversation: take it whole
            conversation, keys = list(context[:common]), keys[:common]
        if pending:
            carried = {m.get("tool_call_id") for m in context if m.get("role") == "tool"}
            missing = [m for m in pending if m.get("tool_call_id") not in carried]
            conversation.extend(missing)
            keys.extend(message_key(m) for m in missing)
        conversation.extend(new)
        keys.extend(new_keys)
        conversation.append(answer)
        keys.append(message_key(answer))
        pending = list(tool_messages) if answer.get("tool_calls") else []
    return conversation
