"""``kto``: TRL's conversational unpaired-preference format.

``{"prompt": [...], "completion": [assistant], "label": true|false, "tools": [...]}``.
Ratings at or above ``kto_desirable`` (default 4) are ``true``, at or below
``kto_undesirable`` (default 2) ``false``; ratings between are left out.  A
corrected answer adds a ``true`` line for the correction and the original
answer counts as ``false`` unless it was rated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wilson_core.interfaces import Exporter

from .shapes import check_messages, check_tools, tools_or_none


class KTOExporter(Exporter):
    description = "TRL KTO: {prompt, completion, label, tools} from star ratings"
    needs = "ratings"
    keeps_every_example = True

    def record(self, example: Any) -> dict[str, Any] | None:
        return {
            "prompt": list(example.prompt),
            "completion": list(example.completion),
            "label": bool(example.label),
            **({"tools": list(example.tools)} if example.tools else {}),
        }

    def check(self, record: Mapping[str, Any]) -> list[str]:
        if not isinstance(record, Mapping):
            return ["a line must be a JSON object"]
        problems = check_messages(record.get("prompt"), "prompt")
        problems += check_messages(record.get("completion"), "completion", roles=("assistant",))
        if not isinstance(record.get("label"), bool):
            problems.append("label must be true or false")
        return problems + check_tools(record.get("tools"), required=False)

    def conversations(self, record: Mapping[str, Any]) -> list[tuple[list[dict[str, Any]], Any]]:
        return [([*record["prompt"], *record["completion"]], tools_or_none(record))]
