"""``alpaca``: instruction-tuning lines ``{"instruction", "input", "output"}``.

Answers that call tools have no Alpaca form and are left out (the manifest
counts them under ``refused_by_exporter``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wilson_core.interfaces import Exporter


class AlpacaExporter(Exporter):
    description = "Alpaca instruction tuning: {instruction, input, output} (no tool calls)"
    needs = "answers"

    def __init__(self, *, include_system: bool = True, **options: Any) -> None:
        super().__init__(**options)
        self.include_system = include_system

    def record(self, example: Any) -> dict[str, Any] | None:
        answer = example.completion[-1]
        if answer.get("tool_calls") or any(m.get("role") == "tool" for m in example.prompt):
            return None
        users = [m for m in example.prompt if m.get("role") == "user"]
        if not users:
            return None
        system = next((m["content"] for m in example.prompt if m.get("role") == "system"), "")
        earlier = [f"{m['role']}: {m['content']}" for m in example.prompt[:-1] if m.get("role") != "system"]
        return {
            "instruction": users[-1]["content"],
            "input": "\n".join(([system] if system and self.include_system else []) + earlier),
            "output": answer["content"],
        }

    def check(self, record: Mapping[str, Any]) -> list[str]:
        if not isinstance(record, Mapping):
            return ["a line must be a JSON object"]
        return [f"{key} must be text" for key in ("instruction", "input", "output")
                if not isinstance(record.get(key), str)]
