"""``wilson deploy ollama``: bundle, creation through the HTTP API, and the artefacts in llama.cpp."""

from __future__ import annotations

import hashlib
import json

import pytest
from wilson_ollama.deployer import parse_modelfile

from wilson_core.cli import main

pytestmark = [pytest.mark.slow]


def deploy(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(["deploy", "ollama", *args, "--json"])
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except ValueError:
        return code, None, err + out


def test_the_model_is_created_through_the_http_api(tiny_model, tiny_adapter, tmp_path, capsys, ollama_server):
    out = tmp_path / "bundle"
    code, report, err = deploy(capsys, "--model", str(tiny_model), "--adapter", str(tiny_adapter),
                               "--out", str(out), "--name", "Wilson Finance", "--host", ollama_server.url,
                               "--option", "system=You sort bank transactions.")
    assert code == 0, err
    assert report["provider"] == "ollama:wilson-finance"
    created = ollama_server.models["wilson-finance"]
    modelfile = parse_modelfile((out / "Modelfile").read_text())
    model_file = out / modelfile["FROM"].removeprefix("./")
    adapter_file = out / modelfile["ADAPTER"].removeprefix("./")
    for path, section in ((model_file, "files"), (adapter_file, "adapters")):
        digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        assert created[section] == {path.name: digest}
        assert ollama_server.blobs[digest] == path.read_bytes()
    assert created["template"] == modelfile["TEMPLATE"]
    assert created["parameters"]["stop"] == modelfile["parameters"]["stop"] == ["<|im_end|>"]
    assert created["system"] == modelfile["SYSTEM"] == "You sort bank transactions."
    assert ("POST", "/api/create") in ollama_server.requests

    # deploying again uploads nothing: the server already has both blobs
    before = [r for r in ollama_server.requests if r[0] == "POST" and r[1].startswith("/api/blobs/")]
    code, report, err = deploy(capsys, "--model", str(tiny_model), "--adapter", str(tiny_adapter),
                               "--out", str(out), "--force", "--name", "Wilson Finance",
                               "--host", ollama_server.url)
    assert code == 0, err
    after = [r for r in ollama_server.requests if r[0] == "POST" and r[1].startswith("/api/blobs/")]
    assert after == before and report["details"]["uploaded"] == []


def test_an_unreachable_ollama_is_a_clear_error_and_writes_nothing(tiny_model, tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "bundle"
    code, _, err = deploy(capsys, "--model", str(tiny_model), "--out", str(out),
                          "--host", f"http://127.0.0.1:{port}")
    assert code == 1
    assert f"cannot reach Ollama at http://127.0.0.1:{port}" in err and "Traceback" not in err
    assert not out.exists()


def test_without_a_server_the_bundle_and_the_exact_create_command_are_given(tiny_model, tmp_path, capsys):
    from wilson_ollama.client import DEFAULT_HOST, OllamaClient

    if OllamaClient(DEFAULT_HOST).reachable(timeout=1.0):
        pytest.skip(f"an Ollama server answers at {DEFAULT_HOST}")
    out = tmp_path / "bundle"
    code = main(["deploy", "ollama", "--model", str(tiny_model), "--out", str(out), "--name", "tiny"])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"ollama create tiny -f {out / 'Modelfile'}" in printed
    modelfile = parse_modelfile((out / "Modelfile").read_text())
    assert "ADAPTER" not in modelfile and (out / modelfile["FROM"].removeprefix("./")).is_file()
    assert modelfile["parameters"]["temperature"] == ["0"]


@pytest.mark.node
def test_what_ollama_would_run_is_what_pytorch_computes(tiny_model, tiny_adapter, tmp_path, capsys):
    """The Modelfile's FROM + ADAPTER in llama.cpp, prompted through its Go TEMPLATE, continue a
    conversation with the same tokens as PyTorch prompted through the HF chat template."""
    import torch  # noqa: TID251
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from wilson_gguf.runner import LlamaCppRunner
    from wilson_gguf.verify import torch_greedy
    from wilson_ollama.gotemplate import render
    from wilson_ollama.templates import PROBE_TOOLS, ollama_values

    out = tmp_path / "bundle"
    code, report, err = deploy(capsys, "--model", str(tiny_model), "--adapter", str(tiny_adapter),
                               "--out", str(out), "--quant", "f32", "--verify")
    assert code == 0, err
    assert report["checks"] and all(c["passed"] for c in report["checks"])
    modelfile = parse_modelfile((out / "Modelfile").read_text())
    messages = [{"role": "system", "content": "You sort bank transactions."},
                {"role": "user", "content": "Rent 900 EUR, category?"},
                {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
                    "name": "categorize", "arguments": {"category": "housing", "id": "t1"}}}]},
                {"role": "tool", "name": "categorize", "content": "ok"}]
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tiny_model))
    expected_ids = tokenizer.apply_chat_template(messages, tools=PROBE_TOOLS, add_generation_prompt=True,
                                                 tokenize=True, return_dict=False)
    prompt = render(modelfile["TEMPLATE"], ollama_values(messages, PROBE_TOOLS))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    tuned = PeftModel.from_pretrained(model, str(tiny_adapter)).eval()
    reference, margins = torch_greedy(tuned, list(expected_ids), 12)
    stop = next((i for i, m in enumerate(margins) if m < 1e-2), 12)
    assert stop >= 4
    with LlamaCppRunner(out / modelfile["FROM"].removeprefix("./"),
                        lora=[out / modelfile["ADAPTER"].removeprefix("./")], exact=True) as runner:
        ids = runner.tokenize(prompt)
        assert ids == list(expected_ids)
        assert runner.greedy(ids, 12)[:stop] == reference[:stop]
