"""``LLM("onnx:DIR")``: the deployed folder answers through the facade, tools included,
exactly as the merged PyTorch model would, and the call is captured."""

from __future__ import annotations

import pytest

TOOLS = [{
    "type": "function",
    "function": {
        "name": "categorise",
        "description": "Record the category of a transaction",
        "parameters": {"type": "object", "properties": {"category": {"type": "string"}},
                       "required": ["category"]},
    },
}]
MESSAGES = [{"role": "user", "content": "Categorise: TESCO STORES 45.10 EUR"}]


def _pytorch_reply(base, adapter, messages, tools, max_tokens):
    """What the merged model says, greedily, in PyTorch (the reference for the provider)."""
    import torch  # noqa: TID251 - test
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(adapter))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().eval()
    text = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    new = out[0, ids.shape[1]:].tolist()
    return tokenizer.decode(new, skip_special_tokens=True), ids.shape[1], len(new)


def test_the_onnx_provider_answers_like_pytorch_and_the_call_is_captured(deployed, tiny_llama, tiny_adapter, tmp_path):
    from wilson_core import LLM
    from wilson_core.messages import parse_tagged_tool_calls
    from wilson_core.store import open_store

    db = tmp_path / "app.db"
    llm = LLM(f"onnx:{deployed['out']}", db=str(db))
    reply = llm.chat(MESSAGES, tools=TOOLS, max_tokens=40)

    text, prompt_tokens, new_tokens = _pytorch_reply(tiny_llama, tiny_adapter, MESSAGES, TOOLS, 40)
    content, calls = parse_tagged_tool_calls(text)
    assert (reply.input_tokens, reply.output_tokens) == (prompt_tokens, new_tokens)
    assert [(c.name, c.arguments, c.raw_arguments) for c in reply.tool_calls] == [
        (c.name, c.arguments, c.raw_arguments) for c in calls]
    assert (reply.content or "") == (content if content or not calls else "")
    assert reply.provider == "onnx"

    store = open_store(str(db))
    rows = list(store.iter_interactions())
    assert len(rows) == 1
    row = rows[0]
    assert row.id == reply.interaction_id and row.provider == "onnx"
    assert row.status == "ok" and row.input_tokens == prompt_tokens
    assert row.messages[-1]["content"] == MESSAGES[0]["content"]
    assert [t["function"]["name"] for t in row.tools] == ["categorise"]


def test_the_int8_model_answers_through_the_facade_too(deployed, tmp_path):
    from wilson_core import LLM

    llm = LLM(f"onnx:{deployed['out']}", db=str(tmp_path / "q8.db"), dtype="q8", threads=1)
    reply = llm.chat([{"role": "user", "content": "Rent 900"}], max_tokens=8)
    assert 0 < reply.output_tokens <= 8 and reply.model.endswith("(q8)")


def test_a_folder_that_is_not_an_onnx_deployment_is_a_clear_error(tmp_path):
    from wilson_core import LLM
    from wilson_core.errors import ProviderError

    with pytest.raises(ProviderError, match="wilson deploy transformersjs"):
        LLM(f"onnx:{tmp_path}", capture=False)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ProviderError, match="model_quantized.onnx not found"):
        LLM(f"onnx:{tmp_path}", capture=False, dtype="q8")


def test_unsupported_request_parameters_are_refused(deployed):
    from wilson_core import LLM
    from wilson_core.errors import ProviderError

    llm = LLM(f"onnx:{deployed['out']}", capture=False)
    with pytest.raises(ProviderError, match="unsupported parameter"):
        llm.chat(MESSAGES, top_k=5)
