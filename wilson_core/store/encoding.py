"""How records are written into rows: canonical JSON, SHA-256 hashes, the system prompt split off."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from wilson_core.records import ToolCall

# default=str: an app's odd parameter (an enum, a model class) must not lose the record.
# One encoder for every call: ``json.dumps`` with options builds a new one each time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): the hashes of contexts and tools depend on it."""
    return _ENCODER.encode(value)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def context_hash_of(messages: Sequence[dict[str, Any]]) -> str:
    """The hash that says two calls saw the same conversation (system prompt and messages)."""
    system_hash, rest = _split_system(messages)
    return sha256((system_hash or "") + "|" + _dumps(rest))


def _is_plain_system(message: dict[str, Any] | None) -> bool:
    """A leading ``{"role": "system", "content": str}`` is stored once, as a blob."""
    return (
        message is not None
        and len(message) == 2
        and message.get("role") == "system"
        and isinstance(message.get("content"), str)
    )


def _split_system(messages: Sequence[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    if messages and _is_plain_system(messages[0]):
        return sha256(messages[0]["content"]), list(messages[1:])
    return None, list(messages)


def _tool_call_dict(call: ToolCall) -> dict[str, Any]:
    data = {"id": call.id, "name": call.name, "args": call.arguments}
    if call.raw_arguments is not None:
        data["raw_args"] = call.raw_arguments
    return data
