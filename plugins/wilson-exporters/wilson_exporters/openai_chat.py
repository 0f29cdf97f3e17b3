"""``openai-chat``: OpenAI's chat fine-tuning JSONL, for training elsewhere.

``{"messages": [...], "tools": [...]}`` in the OpenAI wire shape: tool call
arguments are JSON *strings*, tool messages carry ``tool_call_id`` and
``content`` (no ``name``), and ``tools`` is left out when the call offered none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from wilson_core.interfaces import Exporter

from .shapes import check_messages, check_tools, tools_or_none


def _openai_message(message: Mapping[str, Any]) -> dict[str, Any]:
    if message.get("role") == "tool":
        out = {"role": "tool", "content": message.get("content", "")}
        if message.get("tool_call_id"):
            out["tool_call_id"] = message["tool_call_id"]
        return out
    out = dict(message)
    if out.get("tool_calls"):
        out["tool_calls"] = [
            {
                **({"id": call["id"]} if call.get("id") else {}),
                "type": "function",
                "function": {
                    "name": call["function"]["name"],
                    "arguments": json.dumps(call["function"]["arguments"], ensure_ascii=False),
                },
            }
            for call in out["tool_calls"]
        ]
        if not out.get("content"):
            out["content"] = None
    return out


class OpenAIChatExporter(Exporter):
    description = "OpenAI chat fine-tuning JSONL: {messages, tools?}, arguments as JSON strings"
    needs = "answers"
    keeps_every_example = True

    def record(self, example: Any) -> dict[str, Any] | None:
        record: dict[str, Any] = {"messages": [_openai_message(m) for m in example.messages]}
        if example.tools:
            record["tools"] = list(example.tools)
        return record

    def check(self, record: Mapping[str, Any]) -> list[str]:
        if not isinstance(record, Mapping):
            return ["a line must be a JSON object"]
        problems = check_messages(record.get("messages"), "messages", string_arguments=True)
        if problems:
            return problems
        for index, message in enumerate(record["messages"]):
            for call in message.get("tool_calls") or ():
                try:
                    if not isinstance(json.loads(call["function"]["arguments"]), dict):
                        raise ValueError
                except ValueError:
                    problems.append(f"messages[{index}]: tool call arguments are not a JSON object")
        return problems + check_tools(record.get("tools"), required=False)

    def conversations(self, record: Mapping[str, Any]) -> list[tuple[list[dict[str, Any]], Any]]:
        messages = []
        for message in record["messages"]:
            message = dict(message)
            if message.get("tool_calls"):
                message["tool_calls"] = [
                    {**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                    for c in message["tool_calls"]
                ]
            messages.append(message)
        return [(messages, tools_or_none(record))]
