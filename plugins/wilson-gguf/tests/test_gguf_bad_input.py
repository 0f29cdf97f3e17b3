"""Bad input to ``wilson deploy gguf``: clear errors, nothing half-written, no traceback."""

from __future__ import annotations

import json

import pytest

from wilson_core.cli import main


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(["deploy", "gguf", *args])
    return code, capsys.readouterr().err


def test_an_adapter_trained_on_another_base_is_refused(tiny_model, adapter_trainer, tmp_path, capsys):
    from wilson_train.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "other", arch="llama", hidden_size=64, heads=4, kv_heads=2,
                             intermediate=128, pretrain_steps=0)
    adapter = adapter_trainer(other, tmp_path / "other-adapter", steps=1)
    out = tmp_path / "out"
    code, err = run(capsys, "--model", str(tiny_model), "--adapter", str(adapter), "--out", str(out))
    assert code == 1
    assert "does not match model" in err and "another base model" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_an_adapter_for_another_architecture_is_refused(tiny_model, adapter_trainer, tmp_path, capsys):
    from wilson_train.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "qwen", arch="qwen2", pretrain_steps=0)
    adapter = adapter_trainer(other, tmp_path / "qwen-adapter", steps=1)
    code, err = run(capsys, "--model", str(tiny_model), "--adapter", str(adapter), "--out", str(tmp_path / "o"))
    assert code == 1 and "does not match model" in err


def test_an_unsupported_architecture_is_named(tmp_path, capsys):
    model = tmp_path / "gpt2"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    code, err = run(capsys, "--model", str(model), "--out", str(tmp_path / "o"))
    assert code == 1
    assert "unsupported architecture 'gpt2'" in err and "llama" in err


def test_a_non_empty_output_folder_needs_force(tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = run(capsys, "--model", str(tiny_model), "--out", str(out))
    assert code == 1 and "not empty" in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    code, err = run(capsys, "--model", str(tiny_model), "--out", str(out), "--force", "--quant", "f16")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "model-f16.gguf").is_file()


def test_an_unknown_quantisation_lists_the_choices(tiny_model, tmp_path, capsys):
    code, err = run(capsys, "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--quant", "q3_k")
    assert code == 1 and "q8_0" in err and "q4_0" in err


def test_a_folder_that_is_not_an_adapter_is_refused(tiny_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = run(capsys, "--model", str(tiny_model), "--adapter", str(tmp_path / "empty"),
                    "--out", str(tmp_path / "o"))
    assert code == 1 and "adapter_config.json" in err


@pytest.mark.parametrize("option", ["merge=yes please", "colour=blue"])
def test_unknown_options_are_refused(tiny_model, tmp_path, capsys, option):
    code, err = run(capsys, "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--option", option)
    if option.startswith("colour"):
        assert code == 1 and "unknown gguf option" in err
    else:
        assert code == 0  # merge without --adapter is simply not used


def test_an_unknown_output_head_type_lists_the_choices(tiny_model, tmp_path, capsys):
    out = tmp_path / "o"
    code, err = run(capsys, "--model", str(tiny_model), "--out", str(out), "--option", "output_type=q6_k")
    assert code == 1 and "output_type=q6_k" in err and "f32" in err and "q8_0" in err
    assert not out.exists()
