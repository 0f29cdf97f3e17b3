"""Answers as the evaluators see them: text plus tool calls with parsed arguments."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from attrs import frozen

from wilson_core.messages import parse_arguments


@frozen
class Parts:
    """An assistant message reduced to what metrics compare."""

    content: str
    #: ``(name, canonical JSON of the arguments)`` per call, in order.
    calls: tuple[tuple[str, str], ...]

    @property
    def text(self) -> str:
        """The content and the calls as one text (what token F1 compares)."""
        return " ".join(p for p in [self.content, *(f"{n} {a}" for n, a in self.calls)] if p)


def parts(message: dict[str, Any] | str | None) -> Parts:
    """``message`` (an assistant message dict, a plain string or ``None``) as :class:`Parts`."""
    if message is None:
        return Parts("", ())
    if isinstance(message, str):
        return Parts(message.strip(), ())
    calls = []
    for call in message.get("tool_calls") or ():
        fn = call.get("function", call) if isinstance(call, dict) else {}
        arguments, raw = parse_arguments(fn.get("arguments"))
        canonical = raw if raw is not None else json.dumps(arguments, sort_keys=True, ensure_ascii=False)
        calls.append((str(fn.get("name") or ""), canonical))
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return Parts((content or "").strip(), tuple(calls))


def normal(text: str) -> str:
    """Case-folded with runs of whitespace as one space."""
    return " ".join(text.casefold().split())


_TOKEN = re.compile(r"\w+|[^\w\s]")


def token_f1(prediction: str, reference: str) -> float:
    """F1 over word and punctuation tokens (case-folded); 1.0 when both are empty."""
    pred = _TOKEN.findall(prediction.casefold())
    ref = _TOKEN.findall(reference.casefold())
    if not pred and not ref:
        return 1.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def message_of(response: Any) -> dict[str, Any]:
    """A provider's :class:`~wilson_core.records.ProviderResponse` as an assistant message."""
    message: dict[str, Any] = {"role": "assistant", "content": response.content}
    if response.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.raw_arguments if c.malformed else c.arguments}}
            for c in response.tool_calls
        ]
    return message
