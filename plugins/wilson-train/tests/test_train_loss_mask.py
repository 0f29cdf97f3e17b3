"""Assistant-only loss: the mask covers exactly what the assistant writes, nothing else."""

from __future__ import annotations

import json

import pytest

CONVERSATION = [
    {"role": "system", "content": "You are Wilson."},
    {"role": "user", "content": "Categorise: 2024-05-01 UBER TRIP -12.40 USD"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
        "name": "categorize_transaction",
        "arguments": {"description": "2024-05-01 UBER TRIP -12.40 USD", "category": "Transport"}}}]},
    {"role": "tool", "content": "{\"ok\": true}"},
    {"role": "assistant", "content": "Filed under Transport."},
]
ASSISTANT_PARTS = [
    '<tool_call>{"name": "categorize_transaction", "arguments": {"description": '
    '"2024-05-01 UBER TRIP -12.40 USD", "category": "Transport"}}</tool_call><|im_end|>',
    "Filed under Transport.<|im_end|>",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(tiny_model)


def _spans(mask):
    spans, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        if not bit and start is not None:
            spans.append((start, i))
            start = None
    return spans


def test_the_loss_mask_covers_exactly_the_assistant_tokens_of_a_tool_calling_conversation(tokenizer):
    from wilson_train.corpus import TOOLS
    from wilson_train.data import encode_conversation

    ids, mask = encode_conversation(tokenizer, CONVERSATION, TOOLS)
    assert len(ids) == len(mask)
    spans = _spans(mask)
    assert [tokenizer.decode(ids[a:b]) for a, b in spans] == ASSISTANT_PARTS
    # everything outside the spans is prompt, tool schema, tool result or role header
    outside = "".join(tokenizer.decode(ids[a:b]) for a, b in
                      zip([0] + [e for _, e in spans], [s for s, _ in spans] + [len(ids)], strict=True))
    assert "UBER TRIP" in outside and '{"ok": true}' in outside and "Filed under" not in outside


def test_without_generation_markers_the_fallback_finds_the_same_assistant_turns(tokenizer):
    from wilson_train.corpus import TOOLS
    from wilson_train.data import encode_conversation, has_generation_markers

    marked_ids, marked_mask = encode_conversation(tokenizer, CONVERSATION, TOOLS)
    plain = tokenizer.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    tokenizer_copy = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tokenizer_copy.chat_template = plain
    assert not has_generation_markers(plain)
    ids, mask = encode_conversation(tokenizer_copy, CONVERSATION, TOOLS)
    assert ids == marked_ids
    # the fallback also counts the newline after each end token, and nothing more
    assert [tokenizer.decode(ids[a:b]) for a, b in _spans(mask)] == [p + "\n" for p in ASSISTANT_PARTS]


def test_tools_with_different_parameters_reach_the_template_unchanged(tokenizer):
    """No Arrow struct union: each schema is rendered exactly as given, without null fields."""
    from wilson_train.corpus import TOOLS
    from wilson_train.data import sft_rows

    rows = [{"messages": CONVERSATION, "tools": TOOLS}, {"messages": CONVERSATION, "tools": [TOOLS[1]]}]
    built, dropped = sft_rows(tokenizer, rows, max_length=4096, assistant_only=True)
    from datasets import Dataset

    dataset = Dataset.from_list(built)
    text = tokenizer.decode(dataset[0]["input_ids"])
    assert dropped == 0
    for tool in TOOLS:
        assert json.dumps(tool) in text
    assert "null" not in text
    assert json.dumps(TOOLS[0]) not in tokenizer.decode(dataset[1]["input_ids"])


def test_a_template_that_is_not_incremental_is_refused_with_advice(tokenizer):
    from wilson_train.data import encode_conversation

    from wilson_core.interfaces import TrainError

    odd = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    odd.chat_template = "{% for m in messages %}{{ m.role }}:{{ m.content }}|{% endfor %}{{ messages | length }}"
    with pytest.raises(TrainError, match="generation"):
        encode_conversation(odd, [*CONVERSATION[:2], CONVERSATION[4], CONVERSATION[1], CONVERSATION[4]], None)
