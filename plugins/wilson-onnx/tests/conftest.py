"""Fixtures: tiny Llama and Qwen2 models built locally (wilson_train.tiny), a LoRA adapter
trained a few steps with the real ``lora-sft`` trainer, and one verified deployment of it.

Tests marked ``node`` need Node.js; they are skipped only when ``node`` itself is
missing (a missing ``npm ci`` fails them, so CI cannot skip them silently).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    if shutil.which("node"):
        return
    skip = pytest.mark.skip(reason="node (Node.js 20+) is not installed")
    for item in items:
        if "node" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch  # noqa: TID251 - test fixture

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from wilson_train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", arch="llama", pretrain_steps=40)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    from wilson_train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2", arch="qwen2", pretrain_steps=20, seed=1)


@pytest.fixture(scope="session")
def tiny_adapter(tiny_llama, tmp_path_factory) -> Path:
    """``wilson train lora-sft`` for 8 steps on tool-calling conversations; the adapter folder."""
    from wilson_train.corpus import tool_conversations
    from wilson_train.trainers import LoraSFTTrainer

    from wilson_core.training import build_config

    folder = tmp_path_factory.mktemp("train")
    data = folder / "tools.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in tool_conversations(8, seed=5)), encoding="utf-8")
    config = build_config("lora-sft", {}, {
        "data": str(data), "base": str(tiny_llama), "out": str(folder / "run"), "max_steps": 8,
        "batch_size": 4, "lr": 5e-3, "max_length": 512, "logging_steps": 1, "warmup_ratio": 0.0,
        "merge": False,
    })
    report = LoraSFTTrainer().train(config)
    return Path(report.adapter)


@pytest.fixture(scope="session")
def deployed(tiny_llama, tiny_adapter, tmp_path_factory) -> dict:
    """``wilson deploy transformersjs --model BASE --adapter ADAPTER --verify --json``, run once."""
    from click.testing import CliRunner

    from wilson_core.cli import _register_all, cli

    out = tmp_path_factory.mktemp("deploy") / "web"
    _register_all()
    args = ["deploy", "transformersjs", "--model", str(tiny_llama), "--adapter", str(tiny_adapter),
            "--out", str(out), "--verify", "--json"]
    if not shutil.which("node"):
        args += ["-o", "node=false"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    report = json.loads(result.output[result.output.index("{"):])
    return {"out": out, "report": report, "exit_code": result.exit_code}
