"""``sft``: TRL's conversational language-modelling format, with tools.

One line per example: ``{"messages": [...], "tools": [...]}``.  ``messages``
holds the conversation in the order the model saw and produced it; assistant
tool calls are ``{"id", "type": "function", "function": {"name", "arguments":
{...}}}`` and tool results ``{"role": "tool", "name", "content",
"tool_call_id"}``.  ``tools`` is left out when the call offered none: TRL passes
a line's ``tools`` straight to the chat template, and some templates (Llama 3)
render their tool preamble for an empty list; a missing key loads as ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wilson_core.interfaces import Exporter

from .shapes import check_messages, check_tools, tools_or_none


class SFTExporter(Exporter):
    description = "TRL SFT: {messages, tools}, one conversation per interaction or run"
    needs = "answers"
    keeps_every_example = True

    def record(self, example: Any) -> dict[str, Any] | None:
        record: dict[str, Any] = {"messages": example.messages}
        if example.tools:
            record["tools"] = list(example.tools)
        return record

    def check(self, record: Mapping[str, Any]) -> list[str]:
        if not isinstance(record, Mapping):
            return ["a line must be a JSON object"]
        problems = check_messages(record.get("messages"), "messages")
        if not problems and record["messages"][-1].get("role") != "assistant":
            problems.append("messages must end with the assistant's answer")
        return problems + check_tools(record.get("tools"), required=False)

    def conversations(self, record: Mapping[str, Any]) -> list[tuple[list[dict[str, Any]], Any]]:
        return [(list(record["messages"]), tools_or_none(record))]
