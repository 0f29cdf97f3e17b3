"""Export JSONL -> trainer-ready rows, without Arrow's struct union.

Arrow turns a list of tool schemas with different keys into one struct type with
null fields, which then reach the chat template.  So conversations are rendered
here, in plain Python, and only flat values (token ids, masks, text) go into a
``datasets.Dataset``:

- SFT rows become ``input_ids`` + ``assistant_masks`` (TRL builds labels from them);
- DPO rows become text ``prompt`` / ``chosen`` / ``rejected``;
- KTO rows become text ``prompt`` / ``completion`` / ``label``.

Assistant-only loss uses the template's ``{% generation %}`` markers when it has
them; otherwise (e.g. SmolLM2's ChatML template) each assistant turn is found by
rendering the conversation up to it with and without the turn (the documented
fallback), and a template that does not render incrementally is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wilson_core.interfaces import TrainError


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _tools(row: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = row.get("tools")
    if isinstance(tools, str):
        tools = json.loads(tools)
    return tools or None


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and "generation" in template and "endgeneration" in template


def _ids(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, add_generation_prompt: bool = False) -> list[int]:
    if not messages:
        return []
    out = tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(out["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def encode_conversation(tokenizer: Any, messages: list[dict[str, Any]], tools: Any = None) -> tuple[list[int], list[int]]:
    """Token ids of a conversation and a mask that is 1 exactly on assistant tokens."""
    if has_generation_markers(tokenizer.chat_template):
        out = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        return list(out["input_ids"]), list(out["assistant_masks"])
    ids = _ids(tokenizer, messages, tools)
    mask = [0] * len(ids)
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        before = _ids(tokenizer, messages[:index], tools, add_generation_prompt=True)
        upto = _ids(tokenizer, messages[: index + 1], tools)
        if ids[: len(upto)] != upto:
            raise TrainError(
                "the chat template does not render conversations incrementally, so assistant tokens "
                "cannot be found; add {% generation %} markers to it or train with --all-tokens-loss"
            )
        for position in range(_common_prefix(before, upto), len(upto)):
            mask[position] = 1
    return ids, mask


def sft_rows(tokenizer: Any, rows: list[dict[str, Any]], max_length: int, assistant_only: bool) -> tuple[list[dict[str, Any]], int]:
    """Tokenised SFT rows and the number of examples dropped (no assistant token left)."""
    result = []
    dropped = 0
    for row in rows:
        ids, mask = encode_conversation(tokenizer, row["messages"], _tools(row))
        ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask):
            dropped += 1
            continue
        result.append({"input_ids": ids, "assistant_masks": mask} if assistant_only else {"input_ids": ids})
    return result, dropped


def _render(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _as_messages(value: Any, role: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return list(value)


def completion_text(tokenizer: Any, prompt: list[dict[str, Any]], completion: list[dict[str, Any]], tools: Any) -> tuple[str, str]:
    """The rendered prompt (with the generation prompt) and the completion text after it."""
    prompt_text = _render(tokenizer, prompt, tools, add_generation_prompt=True)
    full = _render(tokenizer, prompt + completion, tools)
    if not full.startswith(prompt_text):
        raise TrainError("the chat template renders the prompt differently alone and with its answer")
    text = full[len(prompt_text):]
    eos = tokenizer.eos_token
    if eos and eos in text:
        text = text[: text.rindex(eos) + len(eos)]
    return prompt_text, text


def dpo_rows(tokenizer: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = []
    for row in rows:
        tools = _tools(row)
        prompt = _as_messages(row["prompt"], "user")
        prompt_text, chosen = completion_text(tokenizer, prompt, _as_messages(row["chosen"], "assistant"), tools)
        _, rejected = completion_text(tokenizer, prompt, _as_messages(row["rejected"], "assistant"), tools)
        result.append({"prompt": prompt_text, "chosen": chosen, "rejected": rejected})
    return result


def kto_rows(tokenizer: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = []
    for row in rows:
        prompt = _as_messages(row["prompt"], "user")
        prompt_text, completion = completion_text(
            tokenizer, prompt, _as_messages(row["completion"], "assistant"), _tools(row)
        )
        result.append({"prompt": prompt_text, "completion": completion, "label": bool(row["label"])})
    return result


def token_count(tokenizer: Any, rows: list[dict[str, Any]], data_format: str) -> int:
    """Tokens the trainer sees per epoch (prompt + answers), for tokens/s figures."""
    if data_format == "sft":
        return sum(len(r["input_ids"]) for r in rows)
    total = 0
    for row in rows:
        prompt = len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
        answers = ("chosen", "rejected") if data_format == "dpo" else ("completion",)
        for key in answers:
            total += prompt + len(tokenizer(row[key], add_special_tokens=False)["input_ids"])
    return total
