"""``dpo``: TRL's conversational preference format with an explicit prompt.

``{"prompt": [...], "chosen": [assistant], "rejected": [assistant], "tools": [...]}``.
Pairs come from the ``pairs`` table, from corrections (the corrected answer is
chosen over the original) and, unless switched off, from answers to the same
context rated high and low.  Tool calls are kept on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wilson_core.interfaces import Exporter

from .shapes import check_messages, check_tools, tools_or_none


class DPOExporter(Exporter):
    description = "TRL DPO: {prompt, chosen, rejected, tools} from pairs, corrections, ratings"
    needs = "pairs"
    keeps_every_example = True

    def record(self, example: Any) -> dict[str, Any] | None:
        return {
            "prompt": list(example.prompt),
            "chosen": list(example.completion),
            "rejected": list(example.rejected),
            **({"tools": list(example.tools)} if example.tools else {}),
        }

    def check(self, record: Mapping[str, Any]) -> list[str]:
        if not isinstance(record, Mapping):
            return ["a line must be a JSON object"]
        problems = check_messages(record.get("prompt"), "prompt")
        for side in ("chosen", "rejected"):
            problems += check_messages(record.get(side), side, roles=("assistant", "tool"))
        if not problems and record["chosen"] == record["rejected"]:
            problems.append("chosen and rejected are the same answer")
        return problems + check_tools(record.get("tools"), required=False)

    def conversations(self, record: Mapping[str, Any]) -> list[tuple[list[dict[str, Any]], Any]]:
        tools = tools_or_none(record)
        return [
            ([*record["prompt"], *record["chosen"]], tools),
            ([*record["prompt"], *record["rejected"]], tools),
        ]
