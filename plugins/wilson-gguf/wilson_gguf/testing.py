"""Shared pytest fixtures for GGUF-based plugins (wilson-gguf, wilson-ollama).

Import them into a ``conftest.py``::

    from wilson_gguf.testing import adapter_trainer, pytest_collection_modifyitems, tiny_adapter, tiny_model

A tiny Llama built locally (``wilson_train.tiny``), a LoRA adapter trained a few
steps, and tests marked ``node`` skipped when node-llama-cpp is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wilson_gguf.runner import runner_ready


def pytest_collection_modifyitems(config, items):
    problem = runner_ready()  # None: installed, or installable on first use
    if problem is None:
        return
    reason = f"llama.cpp cannot run here: {problem}"
    for item in items:
        if "node" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch  # noqa: TID251 - test fixture

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from wilson_train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", arch="llama", pretrain_steps=40)


def train_adapter(base: Path, out: Path, steps: int = 6, seed: int = 0) -> Path:
    """A PEFT LoRA adapter after a few optimizer steps (so lora_B is not zero)."""
    import torch  # noqa: TID251 - test helper
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(base))
    peft_model = get_peft_model(model, LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"]))
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=5e-3)
    ids = tokenizer(["Groceries 45.10 EUR are food. Rent 900 is housing."] * 4,
                    return_tensors="pt")["input_ids"]
    for _ in range(steps):
        peft_model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model, tmp_path_factory) -> Path:
    return train_adapter(tiny_model, tmp_path_factory.mktemp("adapter") / "adapter")


@pytest.fixture(scope="session")
def adapter_trainer():
    """``train_adapter(base, out, steps=6)``: a PEFT LoRA adapter trained a few steps."""
    return train_adapter
