"""``wilson export validate``: check an export line by line, as a trainer would read it.

Every line must be a JSON object of the format's shape (the exporter's
``check``); every conversation in it is rendered through the tokenizer's chat
template with its tools (the exporter's ``conversations``), as TRL renders it;
with ``assistant_only_loss`` the template must mark assistant turns
(``{% generation %}``) so that some tokens of every conversation count.
The report gives token-length statistics and each failing line by number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from attrs import field, frozen

from .options import ExportError
from .tokens import load_tokenizer, render_ids

MAX_FAILURES_LISTED = 200
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


@frozen
class ValidationReport:
    path: str
    format: str
    lines: int
    failures: tuple[dict[str, Any], ...] = field(converter=tuple)
    failed_lines: int
    tokens: dict[str, Any]
    assistant_only_loss: bool

    @property
    def ok(self) -> bool:
        return self.failed_lines == 0

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "ok": self.ok,
            "lines": self.lines,
            "failed_lines": self.failed_lines,
            "failures": list(self.failures),
            "tokens": self.tokens,
            "assistant_only_loss": self.assistant_only_loss,
        }


def detect_format(path: Path) -> str:
    """The format an export was written in: from its manifest, else from its first line's keys."""
    manifest = path.with_name(path.name + ".manifest.json")
    if manifest.is_file():
        try:
            return str(json.loads(manifest.read_text(encoding="utf-8"))["format"])
        except (ValueError, KeyError):
            pass
    if path.name.endswith(".eval.jsonl"):
        twin = path.with_name(path.name[: -len(".eval.jsonl")] + ".jsonl.manifest.json")
        if twin.is_file():
            try:
                return str(json.loads(twin.read_text(encoding="utf-8"))["format"])
            except (ValueError, KeyError):
                pass
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                keys = set(json.loads(line))
            except (ValueError, TypeError):
                break
            if {"prompt", "chosen", "rejected"} <= keys:
                return "dpo"
            if {"prompt", "completion", "label"} <= keys:
                return "kto"
            if "messages" in keys:
                return "sft"
            break
    raise ExportError(f"cannot tell the format of {path}: pass --format")


def _percentile(values: list[int], fraction: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def _assistant_mask_count(tokenizer: Any, messages: list[dict[str, Any]], tools: Any) -> int:
    out = tokenizer.apply_chat_template(
        messages, tools=tools or None, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return int(sum(out["assistant_masks"]))


def validate_file(
    path: str | Path,
    exporter: Any,
    *,
    format_name: str,
    tokenizer: str | None,
    assistant_only_loss: bool = True,
    max_tokens: int | None = None,
) -> ValidationReport:
    """Check every line of ``path`` with ``exporter`` and (optionally) a tokenizer."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no export file at {path}")
    tok = load_tokenizer(tokenizer) if tokenizer else None
    failures: list[dict[str, Any]] = []
    failed = 0
    lengths: list[int] = []
    lines = 0
    over = 0

    def fail(number: int, message: str) -> None:
        nonlocal failed
        failed += 1
        if len(failures) < MAX_FAILURES_LISTED:
            failures.append({"line": number, "error": message})

    marks_assistant = bool(_GENERATION.search(str(getattr(tok, "chat_template", "") or "")))
    if tok is not None and assistant_only_loss and not marks_assistant:
        fail(0, "the tokenizer's chat template does not mark assistant turns ({% generation %}): "
                "assistant-only loss is impossible with it (pass --no-assistant-only-loss to skip)")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            lines += 1
            try:
                record = json.loads(line)
            except ValueError as exc:
                fail(number, f"not valid JSON: {exc}")
                continue
            problems = exporter.check(record)
            if problems:
                fail(number, "; ".join(problems))
                continue
            if tok is None:
                continue
            try:
                longest = 0
                for messages, tools in exporter.conversations(record):
                    ids = render_ids(tok, messages, tools or [])
                    longest = max(longest, len(ids))
                    if (
                        assistant_only_loss
                        and marks_assistant
                        and messages
                        and messages[-1].get("role") == "assistant"
                        and _assistant_mask_count(tok, messages, tools) == 0
                    ):
                        raise ValueError("no assistant tokens are marked: nothing would be trained")
                lengths.append(longest)
                if max_tokens is not None and longest > max_tokens:
                    over += 1
                    fail(number, f"{longest} tokens, over --max-tokens {max_tokens}")
            except Exception as exc:  # a template error names the problem; report it for this line
                fail(number, f"chat template failed: {type(exc).__name__}: {exc}")
    tokens: dict[str, Any] = {"counted": len(lengths)}
    if lengths:
        tokens.update(
            min=min(lengths),
            max=max(lengths),
            mean=round(sum(lengths) / len(lengths), 1),
            p50=_percentile(lengths, 0.5),
            p95=_percentile(lengths, 0.95),
            over_max_tokens=over,
        )
    return ValidationReport(
        path=str(path),
        format=format_name,
        lines=lines,
        failures=failures,
        failed_lines=failed,
        tokens=tokens,
        assistant_only_loss=assistant_only_loss and tok is not None,
    )
