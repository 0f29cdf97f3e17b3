"""Counting an example's tokens, for ``--max-tokens``.

With a tokenizer (a local folder or a name ``transformers`` can load), the
example is rendered through its chat template with its tools, as TRL renders
it, and the tokens are counted exactly.  Without one, the count is an
estimate (UTF-8 bytes of the messages' JSON divided by 4), and the manifest
says so.  ``transformers`` is imported only when a tokenizer is given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .examples import Example
from .options import ExportError


def load_tokenizer(name_or_path: str) -> Any:
    """A tokenizer from a folder or a name (``PreTrainedTokenizerFast`` first, as Wilson saves them)."""
    try:
        from transformers import AutoTokenizer, PreTrainedTokenizerFast
    except ImportError:
        raise ExportError(
            "--tokenizer needs the transformers package: pip install 'wilson-exporters[validate]'"
        ) from None
    from pathlib import Path

    try:
        if (Path(name_or_path) / "tokenizer.json").is_file():
            return PreTrainedTokenizerFast.from_pretrained(name_or_path)
        return AutoTokenizer.from_pretrained(name_or_path)
    except Exception as exc:
        raise ExportError(f"cannot load tokenizer {name_or_path!r}: {type(exc).__name__}: {exc}") from None


def render_ids(tokenizer: Any, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> list[int]:
    """Token ids of a conversation rendered through the tokenizer's chat template."""
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template(list(messages), tools=list(tools) or None, tokenize=True)
        if hasattr(out, "keys") and "input_ids" in out:
            out = out["input_ids"]
        return list(out)
    return list(tokenizer.encode(json.dumps(list(messages), ensure_ascii=False)))


class TokenCounter:
    """Counts an example's longest rendered conversation."""

    def __init__(self, tokenizer: str | None) -> None:
        self.name = tokenizer
        self._tokenizer = load_tokenizer(tokenizer) if tokenizer else None

    @property
    def method(self) -> str:
        if self._tokenizer is None:
            return "estimate: UTF-8 bytes of the messages' JSON / 4"
        return f"chat template of {self.name}"

    def _count(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> int:
        if self._tokenizer is None:
            data = json.dumps([list(messages), list(tools)], ensure_ascii=False)
            return (len(data.encode("utf-8")) + 3) // 4
        return len(render_ids(self._tokenizer, messages, tools))

    def count(self, example: Example) -> int:
        counts = [self._count(example.messages, example.tools)]
        if example.rejected:
            counts.append(self._count([*example.prompt, *example.rejected], example.tools))
        return max(counts)
