"""``wilson deploy gguf``: GGUF files that real llama.cpp runs like PyTorch does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wilson_gguf import verify

from wilson_core.cli import main

pytestmark = [pytest.mark.slow]


def deploy(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(["deploy", "gguf", *args, "--json"])
    out, err = capsys.readouterr()
    try:
        report = json.loads(out)
    except ValueError:
        report = None
    return code, report, err


def metric(report: dict, name_part: str, key: str = "max_abs_diff") -> float:
    return next(c["metrics"][key] for c in report["checks"] if name_part in c["name"])


@pytest.mark.node
def test_f32_base_and_adapter_compute_what_pytorch_computes(tiny_model, tiny_adapter, tmp_path, capsys):
    out = tmp_path / "gguf"
    code, report, err = deploy(capsys, "--model", str(tiny_model), "--adapter", str(tiny_adapter),
                               "--out", str(out), "--quant", "f32", "--verify")
    assert code == 0, err
    assert report["passed"]
    names = [c["name"] for c in report["checks"]]
    assert "model f32: greedy 20 tokens" in names and "model+adapter f32: greedy 20 tokens" in names
    assert metric(report, "model f32: next-token") <= 1e-4
    assert metric(report, "model+adapter f32: next-token") <= 1e-4
    assert metric(report, "model+adapter f32: greedy", "tokens_compared") >= 20
    model_file, adapter_file = (Path(f) for f in report["files"])
    assert model_file.name == "model-f32.gguf" and adapter_file.name == "model-adapter-lora-f32.gguf"
    assert report["provider"] == f"llamacpp:{model_file}?lora={adapter_file}"
    assert json.loads((out / "wilson-deploy.json").read_text())["passed"] is True


@pytest.mark.node
@pytest.mark.parametrize("quant, tolerance", [("f16", 2e-2), ("bf16", 0.15), ("q8_0", 0.2), ("q4_0", 1.2)])
def test_each_precision_stays_within_its_tolerance(tiny_model, tiny_adapter, tmp_path, capsys, quant, tolerance):
    code, report, err = deploy(capsys, "--model", str(tiny_model), "--adapter", str(tiny_adapter),
                               "--out", str(tmp_path / quant), "--quant", quant, "--verify")
    assert code == 0, err
    assert report["passed"]
    assert 0 < metric(report, f"model {quant}: next-token") <= tolerance
    assert 0 < metric(report, f"model+adapter {quant}: next-token") <= tolerance  # the tiny model meets the fixed bounds
    assert report["details"]["model"]["tensor_types"].get(quant.upper(), 0) > 0
    # every lossy type also measures its own rounding in PyTorch
    check = next(c for c in report["checks"] if c["name"] == f"model {quant}: next-token log-probs")
    assert check["metrics"]["rounding_error"] > 0
    assert check["metrics"]["tolerance"] == max(tolerance, verify.ROUNDING_FACTOR * check["metrics"]["rounding_error"])


def _tensor_types(path: str) -> dict[str, str]:
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}


@pytest.mark.parametrize("quant, head", [("f32", "F32"), ("f16", "F32"), ("bf16", "F32"),
                                         ("q8_0", "F16"), ("q4_0", "Q8_0")])
def test_the_output_head_is_kept_in_higher_precision(tiny_model, tmp_path, quant, head):
    from wilson_gguf.deployer import GgufDeployer

    from wilson_core.interfaces import DeployConfig

    report = GgufDeployer().deploy(DeployConfig(model=str(tiny_model), out=str(tmp_path / "g"), quant=quant))
    types = _tensor_types(report.files[0])
    assert types["output.weight"] == head
    assert types["token_embd.weight"] == quant.upper()  # untied: the embedding table is not the head
    assert types["blk.0.attn_q.weight"] == quant.upper() and types["blk.0.attn_norm.weight"] == "F32"
    assert report.details["model"]["output_type"] == head.lower()


def test_a_tied_head_is_the_embedding_table_and_output_type_chooses_its_type(tiny_model, tmp_path):
    import shutil

    from wilson_gguf.deployer import GgufDeployer

    from wilson_core.interfaces import DeployConfig

    tied = tmp_path / "tied"
    shutil.copytree(tiny_model, tied)
    config = json.loads((tied / "config.json").read_text())
    (tied / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    report = GgufDeployer().deploy(DeployConfig(model=str(tied), out=str(tmp_path / "a"), quant="q8_0"))
    types = _tensor_types(report.files[0])
    assert "output.weight" not in types and types["token_embd.weight"] == "F16"
    report = GgufDeployer().deploy(DeployConfig(model=str(tied), out=str(tmp_path / "b"), quant="q8_0",
                                                options={"output_type": "q8_0"}))
    assert _tensor_types(report.files[0])["token_embd.weight"] == "Q8_0"


@pytest.mark.node
def test_the_rounding_bound_still_catches_a_wrong_conversion(tiny_model, tmp_path, monkeypatch):
    """Q8_0's bound grows with the weights' own rounding, not with conversion mistakes: a file
    with the gate and up projections swapped fails it."""
    from wilson_gguf import _writer_impl
    from wilson_gguf.deployer import GgufDeployer

    from wilson_core.interfaces import DeployConfig

    right_name = _writer_impl.gguf_name
    swap = {"ffn_gate": "ffn_up", "ffn_up": "ffn_gate"}

    def wrong_name(tmap, hf_name):
        name = right_name(tmap, hf_name)
        parts = name.split(".")
        return ".".join(swap.get(part, part) for part in parts)

    monkeypatch.setattr(_writer_impl, "gguf_name", wrong_name)
    report = GgufDeployer().deploy(DeployConfig(model=str(tiny_model), out=str(tmp_path / "g"),
                                                quant="q8_0", verify=True))
    check = next(c for c in report.checks if c.name == "model q8_0: next-token log-probs")
    assert not check.passed
    assert check.metrics["max_abs_diff"] > check.metrics["tolerance"]


@pytest.mark.node
def test_merge_writes_one_file_equal_to_base_plus_adapter(tiny_model, tiny_adapter, tmp_path, capsys):
    code, report, err = deploy(capsys, "--model", str(tiny_model), "--adapter", str(tiny_adapter),
                               "--out", str(tmp_path / "m"), "--option", "merge=true", "--verify")
    assert code == 0, err
    assert len(report["files"]) == 1 and report["provider"].count("?lora=") == 0
    assert metric(report, "merged f32: next-token") <= 1e-4


def test_f32_gguf_reads_back_bit_exactly_in_transformers(tiny_model, tmp_path):
    """An independent reader (transformers' GGUF loader undoes the q/k permutation) gets our weights."""
    import torch  # noqa: TID251
    from transformers import AutoModelForCausalLM
    from wilson_gguf.deployer import GgufDeployer

    from wilson_core.interfaces import DeployConfig

    report = GgufDeployer().deploy(DeployConfig(model=str(tiny_model), out=str(tmp_path / "g")))
    gguf_file = Path(report.files[0])
    original = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32).state_dict()
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name,
                                                  dtype=torch.float32).state_dict()
    for name, tensor in original.items():
        assert torch.equal(loaded[name], tensor), name


def test_tokenizer_and_chat_template_are_embedded_as_llama_cpp_expects(tiny_model, tmp_path):
    import gguf
    from wilson_gguf.deployer import GgufDeployer

    from wilson_core.interfaces import DeployConfig

    report = GgufDeployer().deploy(DeployConfig(model=str(tiny_model), out=str(tmp_path / "g"), quant="q8_0"))
    fields = gguf.GGUFReader(report.files[0]).fields
    value = lambda key: fields[key].contents()  # noqa: E731
    tokens = value("tokenizer.ggml.tokens")
    assert value("tokenizer.ggml.model") == "gpt2" and value("tokenizer.ggml.pre") == "gpt-2"
    assert tokens[value("tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    assert tokens[value("tokenizer.ggml.bos_token_id")] == "<|endoftext|>"
    types = value("tokenizer.ggml.token_type")
    assert types[tokens.index("<|im_start|>")] == gguf.TokenType.CONTROL
    assert types[tokens.index("<tool_call>")] == gguf.TokenType.USER_DEFINED
    template = value("tokenizer.chat_template")
    assert "<tool_call>" in template and "endgeneration" not in template
    assert value("general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0


def test_the_adapter_gguf_is_a_llama_cpp_lora_adapter(tiny_model, tiny_adapter, tmp_path):
    import gguf
    import numpy as np
    from safetensors.torch import load_file
    from wilson_gguf._writer_impl import permute_rows
    from wilson_gguf.deployer import GgufDeployer

    from wilson_core.interfaces import DeployConfig

    report = GgufDeployer().deploy(DeployConfig(model=str(tiny_model), adapter=str(tiny_adapter),
                                                out=str(tmp_path / "g")))
    reader = gguf.GGUFReader(report.files[1])
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 16.0
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    peft = load_file(str(tiny_adapter / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.0.self_attn"
    b_q = peft[f"{prefix}.q_proj.lora_B.weight"].numpy()
    assert not np.allclose(b_q, 0)
    assert np.array_equal(tensors["blk.0.attn_q.weight.lora_b"], permute_rows(b_q, 4))
    assert np.array_equal(tensors["blk.0.attn_q.weight.lora_a"], peft[f"{prefix}.q_proj.lora_A.weight"].numpy())
    assert np.array_equal(tensors["blk.0.attn_v.weight.lora_b"], peft[f"{prefix}.v_proj.lora_B.weight"].numpy())


@pytest.mark.node
def test_verification_fails_for_a_gguf_that_computes_something_else(tiny_model, tiny_adapter, tmp_path):
    """The checks can fail: the base GGUF alone compared with base + adapter in PyTorch."""
    from peft import PeftModel
    from wilson_gguf.deployer import GgufDeployer
    from wilson_gguf.source import load_hf_tokenizer, load_torch_model, open_model
    from wilson_gguf.verify import verify_gguf

    from wilson_core.interfaces import DeployConfig

    report = GgufDeployer().deploy(DeployConfig(model=str(tiny_model), out=str(tmp_path / "g")))
    source = open_model(tiny_model)
    tuned = PeftModel.from_pretrained(load_torch_model(source), str(tiny_adapter)).eval()
    checks = verify_gguf(Path(report.files[0]), tuned, load_hf_tokenizer(source), "f32")
    by_name = {c.name: c for c in checks}
    assert by_name["model: tokenizer"].passed
    assert not by_name["model f32: next-token log-probs"].passed
    assert by_name["model f32: next-token log-probs"].metrics["max_abs_diff"] > 1e-4


@pytest.mark.node
def test_a_failed_check_exits_non_zero_and_keeps_the_files(tiny_model, tmp_path, capsys):
    out = tmp_path / "strict"
    code = main(["deploy", "gguf", "--model", str(tiny_model), "--out", str(out), "--quant", "f16",
                 "--verify", "--option", "tolerance=1e-9"])
    captured = capsys.readouterr()
    assert code == 3
    assert "FAIL model f16: next-token log-probs" in captured.out
    assert "Error: verification failed: model f16: next-token log-probs" in captured.err
    assert (out / "model-f16.gguf").is_file()
    assert json.loads((out / "wilson-deploy.json").read_text())["passed"] is False
