"""The Modelfile TEMPLATE renders conversations (tools, tool calls) exactly as the HF template."""

from __future__ import annotations

import json

import pytest
from wilson_ollama.gotemplate import render
from wilson_ollama.templates import (
    PROBE_TOOLS,
    chatml,
    check_translation,
    choose_template,
    ollama_values,
    probe_conversations,
    wilson_chatml_tools,
)

from wilson_core.interfaces import DeployError


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(tiny_model))


def hf(tokenizer):
    return lambda m, t, g: tokenizer.apply_chat_template(m, tools=t, add_generation_prompt=g, tokenize=False)


def test_every_probe_conversation_renders_identically_through_go_and_jinja(tokenizer):
    assert check_translation(wilson_chatml_tools(), hf(tokenizer)) == []
    with_tools = [p for p in probe_conversations() if p[1] and any(m.get("tool_calls") for m in p[0])]
    assert with_tools, "the probes include tool calls"
    messages, tools, _ = with_tools[0]
    text = render(wilson_chatml_tools(), ollama_values(messages, tools))
    assert '<tool_call>{"name": "categorize", "arguments": {"category": "housing", "id": "t1"}}</tool_call>' in text
    assert '{"limit": 5, "query": "rent"}' in text and json.dumps(PROBE_TOOLS[0]) in text


def test_the_choice_is_the_translation_that_matches(tokenizer):
    name, _ = choose_template(tokenizer.chat_template, hf(tokenizer))
    assert name == "wilson-chatml-tools"
    assert check_translation(chatml(), hf(tokenizer)) != []  # plain ChatML would drop the tools


def test_smollm2s_template_maps_to_chatml_with_its_default_system_prompt():
    from wilson_gguf.provider import render_chat

    template = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    name, go = choose_template(template, lambda m, t, g: render_chat(template, m, t, add_generation_prompt=g))
    assert name == "chatml-default-system"
    assert render(go, ollama_values([{"role": "user", "content": "hi"}], None)).startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_a_template_with_no_translation_is_a_clear_error():
    from wilson_gguf.provider import render_chat

    template = "{% for m in messages %}### {{ m.role }}: {{ m.content }}\n{% endfor %}"
    with pytest.raises(DeployError, match="template_file"):
        choose_template(template, lambda m, t, g: render_chat(template, m, t, add_generation_prompt=g))


def test_go_sorts_argument_keys_which_is_the_only_difference_from_insertion_order(tokenizer):
    """Documented limit: Go ranges maps in sorted key order; HF keeps the caller's order."""
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "search", "arguments": {"query": "rent", "limit": 5}}}]}]
    ours = render(wilson_chatml_tools(), ollama_values(messages, PROBE_TOOLS))
    theirs = tokenizer.apply_chat_template(messages, tools=PROBE_TOOLS, tokenize=False)
    assert ours != theirs
    assert ours == theirs.replace('{"query": "rent", "limit": 5}', '{"limit": 5, "query": "rent"}')
