"""``sft``: TRL's conversational language-modelling format, with tools.

One line per example: ``{"messages": [...], "tools": [...]}``.  ``messages``
holds the conversation in the order the model saw and produced it; assistant
tool calls are ``{"id", "type": "function", "function": {"name", "arguments":
{...}}}`` and tool results ``{"role": "tool", "name", "content",
"tool_call_id"}``.  ``tools`` is always present (``[]`` when the call offered
none; TRL treats an empty list as no tools).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wilson_core.interfaces import Exporter

from .shapes import check_messages, check_tools, tools_or_none


class SFTExporter(Exporter):
    description = "TRL SFT: {messages, tools}, one conversation per interaction or run"
    needs = "answers"

    def record(self, example: Any) -> dict[str, Any] | None:
        return {"messages": example.messages, "tools": list(example.tools)}

    def check(self, record: Mapping[str, Any]) -> list[str]:
        if not isinstance(record, Mapping):
            return ["a line must be a JSON object"]
        problems = check_messages(record.get("messages"), "messages")
        if not problems and record["messages"][-1].get("role") != "assistant":
            problems.append("messages must end with the assistant's answer")
        return problems + check_tools(record.get("tools"), required=False)

    def conversations(self, record: Mapping[str, Any]) -> list[tuple[list[dict[str, Any]], Any]]:
        return [(list(record["messages"]), tools_or_none(record))]
