"""Switching the app: ``LLM("llamacpp:...")`` runs the deployed GGUF; calls are captured."""

from __future__ import annotations

import pytest

from wilson_core.interfaces import DeployConfig

pytestmark = [pytest.mark.slow, pytest.mark.node]

TOOLS = [{"type": "function", "function": {
    "name": "categorize", "description": "Set the category of a bank transaction",
    "parameters": {"type": "object",
                   "properties": {"category": {"type": "string"}},
                   "required": ["category"]}}}]
ASK = [{"role": "system", "content": "You sort bank transactions."},
       {"role": "user", "content": "Categorise: RENT NOVEMBER 900.00"}]
ANSWER = {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
    "name": "categorize", "arguments": {"category": "housing"}}}]}


@pytest.fixture(scope="module")
def tool_adapter(tiny_model, tmp_path_factory):
    """An adapter that learned (by heart) to answer ASK with a categorize tool call."""
    import torch  # noqa: TID251
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj",
                                                                  "gate_proj", "down_proj"]))
    text = tokenizer.apply_chat_template(ASK + [ANSWER], tools=TOOLS, tokenize=False)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(80):
        peft_model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tmp_path_factory.mktemp("tool-adapter") / "adapter"
    peft_model.save_pretrained(str(out))
    return out


def test_the_provider_renders_prompts_exactly_as_the_training_template(tiny_model, tiny_adapter, tmp_path):
    from transformers import PreTrainedTokenizerFast
    from wilson_gguf.deployer import GgufDeployer
    from wilson_gguf.provider import LlamaCppProvider

    report = GgufDeployer().deploy(DeployConfig(model=str(tiny_model), out=str(tmp_path / "g")))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tiny_model))
    provider = LlamaCppProvider(report.provider.split(":", 1)[1])
    try:
        conversation = ASK + [ANSWER, {"role": "tool", "name": "categorize", "content": "ok"}]
        for messages, tools in ((ASK, None), (ASK, TOOLS), (conversation, TOOLS)):
            expected = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                                     tokenize=True, return_dict=False)
            assert provider.prompt_tokens(messages, tools) == list(expected)
    finally:
        provider.close()


def test_the_app_gets_a_tool_call_from_the_deployed_gguf_and_the_call_is_captured(
        tiny_model, tool_adapter, tmp_path):
    from wilson_gguf.deployer import GgufDeployer

    from wilson_core import LLM
    from wilson_core.store import open_store

    report = GgufDeployer().deploy(DeployConfig(model=str(tiny_model), adapter=str(tool_adapter),
                                                out=str(tmp_path / "gguf"), quant="f16", verify=True))
    assert report.passed, [c.detail for c in report.checks if not c.passed]
    db = tmp_path / "wilson.db"
    llm = LLM(report.provider, db=str(db), call_type="categorize")
    try:
        with llm.run() as run:
            reply = run.chat(ASK, tools=TOOLS, max_tokens=48)
    finally:
        llm.close()
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("categorize", {"category": "housing"})]
    assert reply.provider == "llamacpp" and reply.output_tokens > 0
    stored = open_store(str(db)).get_interaction(reply.interaction_id)
    assert stored.status == "ok" and stored.call_type == "categorize"
    assert [c.name for c in stored.tool_calls] == ["categorize"]
    assert stored.tool_calls[0].arguments == {"category": "housing"}
    assert stored.tools[0]["function"]["name"] == "categorize"
    assert stored.input_tokens == reply.input_tokens > 0


def test_a_missing_gguf_is_a_clear_provider_error(tmp_path):
    from wilson_core import LLM
    from wilson_core.errors import WilsonError

    with pytest.raises(WilsonError, match="does not exist"):
        LLM(f"llamacpp:{tmp_path / 'nope.gguf'}", db=str(tmp_path / "w.db"))


def test_a_relative_gguf_path_works_from_any_working_folder(tiny_model, tmp_path, monkeypatch):
    from wilson_gguf.deployer import GgufDeployer
    from wilson_gguf.runner import LlamaCppRunner

    report = GgufDeployer().deploy(DeployConfig(model=str(tiny_model), out=str(tmp_path / "g")))
    monkeypatch.chdir(tmp_path)
    relative = (tmp_path / "g").glob("*.gguf").__next__().relative_to(tmp_path)
    runner = LlamaCppRunner(relative)
    try:
        assert runner.model.is_absolute() and runner.model.is_file()
    finally:
        runner.close()
    assert report.files
