"""``wilson deploy transformersjs``: the Transformers.js folder layout, and verification that
onnxruntime and Transformers.js compute what PyTorch computes."""

from __future__ import annotations

import json

import pytest


def _check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def test_a_lora_tuned_tiny_llama_deploys_in_the_layout_transformersjs_loads(deployed):
    out, report = deployed["out"], deployed["report"]
    assert deployed["exit_code"] == 0, report
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "onnx/model.onnx", "onnx/model_quantized.onnx"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["rope_theta"] == 10000.0
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "<tool_call>" in tok_config["chat_template"]
    assert "{% generation %}" not in tok_config["chat_template"]  # training markers stripped
    generation = json.loads((out / "generation_config.json").read_text())
    tokenizer = json.loads((out / "tokenizer.json").read_text())
    im_end = next(t["id"] for t in tokenizer["added_tokens"] if t["content"] == "<|im_end|>")
    assert generation["eos_token_id"] == im_end and generation["do_sample"] is False
    assert report["provider"] == f"onnx:{out.resolve()}"
    # int8 projections; the untied output head (vocab x hidden, ~30% of this tiny model) stays fp32
    assert (out / "onnx" / "model_quantized.onnx").stat().st_size < 0.8 * (out / "onnx" / "model.onnx").stat().st_size


def test_the_decoder_has_the_input_and_output_names_transformersjs_feeds(deployed):
    import onnx

    model = onnx.load(str(deployed["out"] / "onnx" / "model.onnx"), load_external_data=False)
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    outputs = [o.name for o in model.graph.output]
    assert list(inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert inputs["input_ids"] == ["batch_size", "sequence_length"]
    assert inputs["past_key_values.1.value"][:3] == ["batch_size", 2, "past_sequence_length"]
    assert outputs == ["logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value"]


def test_onnxruntime_fp32_matches_pytorch_and_int8_matches_pytorch_running_its_weights(deployed):
    report = deployed["report"]
    fp32, q8 = _check(report, "onnxruntime fp32"), _check(report, "onnxruntime q8")
    assert fp32["passed"] and fp32["metrics"]["max_abs_diff"] <= 1e-4, fp32
    assert fp32["metrics"]["limit"] == 1e-4  # a 2-layer model stays within the plain bound
    assert fp32["metrics"]["greedy_equal"] == fp32["metrics"]["prompts"] == 3
    # int8: as tight as fp32, against PyTorch with the file's de-quantised weights
    assert q8["passed"] and q8["metrics"]["max_abs_diff"] <= 1e-4 == q8["metrics"]["limit"], q8
    assert q8["metrics"]["greedy_equal"] == 3
    assert 0 < q8["metrics"]["int8_rounding"] < 0.5  # what int8 costs against the original model
    assert q8["metrics"]["clear_top1_mismatches"] == 0 and q8["metrics"]["clear_positions"] > 50
    weights = _check(report, "int8 weights")
    assert weights["passed"] and 0.4 < weights["metrics"]["max_steps"] <= 1.0 + 1e-3


def test_int8_keeps_the_output_head_and_the_embeddings_in_float32(deployed):
    import onnx

    model = onnx.load(str(deployed["out"] / "onnx" / "model_quantized.onnx"))
    head = next(n for n in model.graph.node if "logits" in n.output)
    assert head.op_type == "MatMul"
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulNBits") == 2 * 7  # every projection of both layers
    embedding = next(n for n in model.graph.node if n.op_type == "Gather" and "input_ids" in n.input)
    table = next(i for i in model.graph.initializer if i.name == embedding.input[0])
    assert table.data_type == onnx.TensorProto.FLOAT


def test_a_wrong_int8_weight_fails_verification(deployed, tiny_llama, tiny_adapter, tmp_path):
    """The int8 reference is read from the file, so the file's weights are checked on their own:
    one block's scale off by 10% is found."""
    import shutil

    import onnx
    from onnx import numpy_helper
    from wilson_onnx.source import load_merged_model, load_tokenizer, resolve_model
    from wilson_onnx.verify import DEFAULT_PROMPTS, verify

    folder = tmp_path / "web"
    shutil.copytree(deployed["out"], folder)
    path = folder / "onnx" / "model_quantized.onnx"
    model = onnx.load(str(path))
    scales = next(i for i in model.graph.initializer if i.name.endswith("_scales"))
    values = numpy_helper.to_array(scales).copy()
    values.flat[0] *= 1.1
    scales.CopyFrom(numpy_helper.from_array(values, scales.name))
    onnx.save(model, str(path))
    source = resolve_model(tiny_llama)
    checks, _ = verify(load_merged_model(source, tiny_adapter), load_tokenizer(source, tiny_adapter), folder,
                       ["fp32", "q8"], DEFAULT_PROMPTS[:1], node=False)
    by_name = {c.name: c for c in checks}
    assert by_name["onnxruntime fp32"].passed
    assert not by_name["int8 weights"].passed and by_name["int8 weights"].metrics["max_steps"] > 1


def test_the_adapter_is_merged_into_the_exported_weights(deployed, tiny_llama):
    import numpy as np
    import torch  # noqa: TID251 - test
    from transformers import AutoModelForCausalLM
    from wilson_onnx.runtime import OnnxCausalLM

    ids = [5, 17, 42, 99, 3]
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.float32)
    with torch.no_grad():
        base_logits = base(input_ids=torch.tensor([ids])).logits[0].numpy()
    exported = OnnxCausalLM(deployed["out"]).logits(ids)
    assert np.abs(exported - base_logits).max() > 1e-3


@pytest.mark.node
def test_transformersjs_in_node_generates_the_same_greedy_ids_as_pytorch(deployed):
    report = deployed["report"]
    fp32 = _check(report, "Transformers.js fp32")
    assert fp32["passed"], fp32
    assert fp32["metrics"]["template_ids_equal"] == 3  # its own Jinja + tokenizer, same ids
    assert fp32["metrics"]["greedy_equal"] == 3
    assert fp32["metrics"]["max_abs_diff"] <= 1e-4
    q8 = _check(report, "Transformers.js q8")
    assert q8["passed"] and q8["metrics"]["greedy_equal"] == 3, q8


@pytest.mark.node
def test_a_tiny_qwen2_deploys_and_verifies_in_every_runtime(tiny_qwen2, tmp_path):
    from wilson_onnx.deployer import TransformersJsDeployer

    from wilson_core.interfaces import DeployConfig

    report = TransformersJsDeployer().deploy(
        DeployConfig(model=str(tiny_qwen2), out=str(tmp_path / "web"), verify=True, quant="int8")
    )
    assert [c.name for c in report.checks] == [
        "onnxruntime fp32", "int8 weights", "onnxruntime q8", "Transformers.js fp32", "Transformers.js q8"]
    assert report.passed, [c.detail for c in report.checks if not c.passed]
    assert json.loads((tmp_path / "web" / "config.json").read_text())["model_type"] == "qwen2"
