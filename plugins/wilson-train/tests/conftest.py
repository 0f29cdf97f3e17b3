"""Shared fixtures: one tiny pre-trained model and small data files per test session."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch  # noqa: TID251

    torch.set_num_threads(1)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Llama with ~100 steps of pre-training on the built-in finance corpus."""
    from wilson_train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", arch="llama", pretrain_steps=100)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """sft / dpo / kto files in TRL's documented shapes (a small categorisation set)."""
    from wilson_train.corpus import CATEGORIES, categorisation_conversations, tool_conversations

    folder = tmp_path_factory.mktemp("data")
    conversations = categorisation_conversations(16, seed=11)
    write_jsonl(folder / "sft.jsonl", [{"messages": c} for c in conversations])
    write_jsonl(folder / "tools.jsonl", tool_conversations(8, seed=13))
    write_jsonl(folder / "eval.jsonl", [{"messages": c} for c in categorisation_conversations(6, seed=12)])
    rng = random.Random(3)
    dpo, kto = [], []
    for c in conversations:
        wrong = {"role": "assistant", "content": rng.choice([x for x in CATEGORIES if x != c[2]["content"]])}
        dpo.append({"prompt": c[:2], "chosen": [c[2]], "rejected": [wrong]})
        kto.append({"prompt": c[:2], "completion": [c[2]], "label": True})
        kto.append({"prompt": c[:2], "completion": [wrong], "label": False})
    write_jsonl(folder / "dpo.jsonl", dpo)
    write_jsonl(folder / "kto.jsonl", kto)
    return folder


def _train_config(**values):
    from wilson_core.training import build_config

    defaults = {"batch_size": 4, "max_length": 128, "logging_steps": 1, "save_steps": 100, "warmup_ratio": 0.0}
    trainer = values.pop("trainer")
    return build_config(trainer, {}, {**defaults, **values})


@pytest.fixture(scope="session")
def make_config():
    """``make_config(trainer=..., data=..., base=..., out=..., **settings)`` -> TrainConfig (fast test defaults)."""
    return _train_config


@pytest.fixture(scope="session")
def sft_run(tiny_model, data_dir, tmp_path_factory) -> Path:
    """A finished lora-sft run of the tiny model on 8 tool-calling conversations, evaluated on the
    same set (a small overfit set); shared by reload, provider and eval tests."""
    from wilson_train.trainers import LoraSFTTrainer

    out = tmp_path_factory.mktemp("runs") / "sft"
    data = str(data_dir / "tools.jsonl")
    config = _train_config(trainer="lora-sft", data=data, base=str(tiny_model), out=str(out),
                           max_steps=16, lr=5e-3, max_length=512, eval_data=data)
    LoraSFTTrainer().train(config)
    return out
