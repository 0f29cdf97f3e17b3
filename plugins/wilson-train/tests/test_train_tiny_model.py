"""wilson model init: a tokenizer, a chat template and a small model that every consumer reads."""

from __future__ import annotations

import json

from wilson_train.corpus import TOOLS


def test_the_tiny_model_folder_has_what_every_consumer_reads(tiny_model):
    config = json.loads((tiny_model / "config.json").read_text())
    tok_config = json.loads((tiny_model / "tokenizer_config.json").read_text())
    generation = json.loads((tiny_model / "generation_config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["rope_theta"] == 10000.0
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "{% generation %}" in tok_config["chat_template"]
    assert (tiny_model / "chat_template.jinja").read_text() == tok_config["chat_template"]
    assert generation["eos_token_id"] == config["eos_token_id"]
    assert (tiny_model / "model.safetensors").exists()


def test_the_pre_training_pass_lowers_the_loss(tiny_model):
    card = json.loads((tiny_model / "wilson_model.json").read_text())
    assert card["pretrain_loss_last"] < card["pretrain_loss_first"] / 2


def test_the_tokenizer_is_gpt2_style_byte_level_and_round_trips_any_text(tiny_model):
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tiny_model)
    data = json.loads((tiny_model / "tokenizer.json").read_text())
    assert data["pre_tokenizer"]["type"] == "ByteLevel" and data["pre_tokenizer"]["use_regex"] is True
    assert data["decoder"]["type"] == "ByteLevel"
    text = "Café ☕ 4.75 € — 日本 <tool_call>{\"name\": \"x\"}</tool_call>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(tokenizer) > 1000


def test_the_chat_template_renders_tools_tool_calls_and_tool_results(tiny_model):
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tiny_model)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Spent on dining?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_spending", "arguments": {"category": "Dining"}}}]},
        {"role": "tool", "content": "{\"total\": 12.5}"},
        {"role": "assistant", "content": "12.50 dollars."},
    ]
    text = tokenizer.apply_chat_template(messages, tools=TOOLS, tokenize=False)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n")
    assert json.dumps(TOOLS[1]) in text
    assert '<|im_start|>assistant\n<tool_call>{"name": "get_spending", "arguments": {"category": "Dining"}}</tool_call><|im_end|>\n' in text
    assert "<|im_start|>tool\n{\"total\": 12.5}<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n12.50 dollars.<|im_end|>\n")
    # arguments given as a JSON string render the same way
    messages[2]["tool_calls"][0]["function"]["arguments"] = '{"category": "Dining"}'
    assert tokenizer.apply_chat_template(messages, tools=TOOLS, tokenize=False) == text
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nSpent on dining?<|im_end|>\n<|im_start|>assistant\n")


def test_a_qwen2_tiny_model_keeps_its_own_tokenizer(tmp_path):
    from wilson_train.base import load_tokenizer, resolve_base
    from wilson_train.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path / "qwen", arch="qwen2", vocab_size=600)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    tokenizer = load_tokenizer(resolve_base(str(folder)))
    assert type(tokenizer).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    text = "2024-03-14 STARBUCKS #1234 -4.75 USD"
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == raw.encode(text).ids


def test_model_init_refuses_a_non_empty_folder(tmp_path):
    from wilson_core.cli import main

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    assert main(["model", "init", "--out", str(tmp_path / "x")]) == 1
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_wilson_model_init_builds_a_model_from_a_corpus_file(tmp_path, capsys):
    from wilson_core.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Paid {i}.{i % 100:02d} dollars at store number {i} for groceries" for i in range(300)))
    code = main(["model", "init", "--arch", "qwen2", "--out", str(tmp_path / "m"), "--corpus", str(corpus),
                 "--vocab-size", "400", "--pretrain-steps", "3"])
    assert code == 0
    assert "qwen2 model with" in capsys.readouterr().out
    card = json.loads((tmp_path / "m" / "wilson_model.json").read_text())
    assert card["arch"] == "qwen2" and card["pretrain_steps"] == 3 and card["vocab_size"] <= 400 + 2  # + the two tool-call tags
