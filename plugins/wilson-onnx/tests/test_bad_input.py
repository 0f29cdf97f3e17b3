"""Bad input to ``wilson deploy transformersjs``: a clear ``Error: ...`` and a non-zero exit,
nothing half-written over the user's files."""

from __future__ import annotations

import json

import pytest


def _wilson(capsys, *args: str) -> tuple[int, str]:
    from wilson_core.cli import main

    code = main(["deploy", "transformersjs", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_an_architecture_transformersjs_cannot_run_is_refused(tmp_path, capsys):
    model = tmp_path / "gpt2"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    code, output = _wilson(capsys, "--model", str(model), "--out", str(tmp_path / "out"))
    assert code == 1
    assert "Error: the transformersjs deployer supports the llama, qwen2 architectures" in output
    assert "'gpt2' model" in output and "Traceback" not in output


def test_an_adapter_trained_on_another_base_is_refused(tiny_adapter, tmp_path, capsys):
    from wilson_train.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "narrow", arch="llama", hidden_size=64, intermediate=128)
    code, output = _wilson(capsys, "--model", str(other), "--adapter", str(tiny_adapter),
                           "--out", str(tmp_path / "out"))
    assert code == 1  # the adapter's recorded base is on disk: its config tells
    assert "does not fit model" in output and "hidden_size 128" in output and "hidden_size 64" in output

    # without the recorded base (a hub id, a moved folder) the LoRA shapes still tell
    import shutil

    moved = tmp_path / "moved-adapter"
    shutil.copytree(tiny_adapter, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "someone/elsewhere"
    (moved / "adapter_config.json").write_text(json.dumps(config))
    code, output = _wilson(capsys, "--model", str(other), "--adapter", str(moved),
                           "--out", str(tmp_path / "out"))
    assert code == 1
    assert "does not fit model" in output and "trained on another base" in output
    assert not (tmp_path / "out").exists()  # refused after loading: the new folder is removed


def test_an_adapter_of_another_architecture_with_the_same_shapes_is_refused(tiny_adapter, tiny_qwen2, tmp_path, capsys):
    code, output = _wilson(capsys, "--model", str(tiny_qwen2), "--adapter", str(tiny_adapter),
                           "--out", str(tmp_path / "out"))
    assert code == 1
    assert "does not fit model" in output and "model_type 'llama'" in output and "'qwen2'" in output
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_folder_that_is_not_an_adapter_is_refused(tiny_llama, tmp_path, capsys):
    code, output = _wilson(capsys, "--model", str(tiny_llama), "--adapter", str(tiny_llama),
                           "--out", str(tmp_path / "out"))
    assert code == 1 and "is not a PEFT adapter (no adapter_config.json)" in output


def test_a_non_empty_output_folder_needs_force_and_is_left_alone(tiny_llama, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, output = _wilson(capsys, "--model", str(tiny_llama), "--out", str(out))
    assert code == 1 and "is not empty" in output and "--force" in output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_force_replaces_an_earlier_deployment_and_fp32_drops_the_stale_int8_file(deployed, tiny_llama, tmp_path, capsys):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(deployed["out"], out)
    assert (out / "onnx" / "model_quantized.onnx").exists()
    code, output = _wilson(capsys, "--model", str(tiny_llama), "--out", str(out), "--force", "--quant", "fp32")
    assert code == 0, output
    assert (out / "onnx" / "model.onnx").exists() and not (out / "onnx" / "model_quantized.onnx").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--quant", "q4"], "unsupported --quant 'q4'"),
    (["-o", "colour=red"], "unknown transformersjs option(s): colour"),
])
def test_unknown_settings_are_refused_before_any_work(tiny_llama, tmp_path, capsys, args, message):
    code, output = _wilson(capsys, "--model", str(tiny_llama), "--out", str(tmp_path / "out"), *args)
    assert code == 1 and message in output
    assert not (tmp_path / "out").exists()


def test_a_missing_node_install_is_reported_with_the_command_that_fixes_it(tmp_path, monkeypatch):
    import shutil

    from wilson_onnx.node import node_folder, node_ready, run_transformersjs

    from wilson_core.interfaces import DeployError

    folder = tmp_path / "node"
    folder.mkdir()
    shutil.copy(node_folder() / "run.mjs", folder / "run.mjs")
    monkeypatch.setenv("WILSON_ONNX_NODE_DIR", str(folder))
    if shutil.which("node") is None:
        assert "node is not installed" in node_ready()
        return
    assert "@huggingface/transformers is not installed" in node_ready()
    with pytest.raises(DeployError, match=r"ONNXRUNTIME_NODE_INSTALL=skip .*npm ci --ignore-scripts --prefix"):
        run_transformersjs({"model_dir": str(tmp_path), "dtype": "fp32", "max_new_tokens": 1, "prompts": []})
