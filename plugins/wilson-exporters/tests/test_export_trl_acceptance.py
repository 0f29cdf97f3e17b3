"""Each exported file loads with datasets and trains for a few steps with TRL's own trainers."""

from __future__ import annotations

import json
import math

import pytest

from wilson_core.exporting import ExportOptions, run_export

pytestmark = pytest.mark.slow


def load(path):
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset("json", data_files=str(path), split="train")


def tokenizer_of(model_dir):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(model_dir)


def model_of(model_dir):
    import torch  # noqa: TID251 - lazy import inside a fixture
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


COMMON = dict(
    max_steps=2,
    per_device_train_batch_size=2,
    learning_rate=1e-4,
    use_cpu=True,
    bf16=False,
    gradient_checkpointing=False,
    report_to=[],
    save_strategy="no",
    logging_steps=1,
    dataloader_num_workers=0,
    seed=0,
)


def finite_losses(trainer):
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return bool(losses) and all(math.isfinite(x) for x in losses)


def test_loaded_rows_render_exactly_like_the_written_lines(sample, tiny_model, tmp_path):
    """Two tools with different parameters: no Arrow struct union may leak null fields into prompts."""
    store, _ = sample
    run_export(store, ExportOptions(format="sft"), tmp_path / "sft.jsonl")
    tokenizer = tokenizer_of(tiny_model)
    raw = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    loaded = load(tmp_path / "sft.jsonl")
    assert len(loaded) == len(raw) == 7
    for row, line in zip(loaded, raw, strict=True):
        assert row["messages"] == line["messages"] and row["tools"] == line.get("tools")
        # what TRL's trainers do with a row: tools go to the template as they are
        assert tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=False) == \
            tokenizer.apply_chat_template(line["messages"], tools=line.get("tools"), tokenize=False)


def test_sft_trainer_trains_on_the_sft_export_with_assistant_only_loss(sample, tiny_model, tmp_path):
    from trl import SFTConfig, SFTTrainer

    store, _ = sample
    run_export(store, ExportOptions(format="sft", granularity="interaction"), tmp_path / "sft.jsonl")
    config = SFTConfig(output_dir=str(tmp_path / "out"), assistant_only_loss=True, max_length=1024, **COMMON)
    trainer = SFTTrainer(model=model_of(tiny_model), args=config, train_dataset=load(tmp_path / "sft.jsonl"),
                         processing_class=tokenizer_of(tiny_model))
    trainer.train()
    assert trainer.state.global_step == 2 and finite_losses(trainer)


def test_sft_trainer_trains_on_a_per_run_export(sample, tiny_model, tmp_path):
    from trl import SFTConfig, SFTTrainer

    store, _ = sample
    run_export(store, ExportOptions(format="sft", granularity="run"), tmp_path / "runs.jsonl")
    config = SFTConfig(output_dir=str(tmp_path / "out"), assistant_only_loss=True, max_length=1024, **COMMON)
    trainer = SFTTrainer(model=model_of(tiny_model), args=config, train_dataset=load(tmp_path / "runs.jsonl"),
                         processing_class=tokenizer_of(tiny_model))
    trainer.train()
    assert trainer.state.global_step == 2 and finite_losses(trainer)


def test_dpo_trainer_trains_on_the_dpo_export(sample, tiny_model, tmp_path):
    from trl import DPOConfig, DPOTrainer

    store, _ = sample
    manifest = run_export(store, ExportOptions(format="dpo"), tmp_path / "dpo.jsonl")
    assert manifest["counts"]["total"] == 2
    config = DPOConfig(output_dir=str(tmp_path / "out"), max_length=1024, **COMMON)
    trainer = DPOTrainer(model=model_of(tiny_model), args=config, train_dataset=load(tmp_path / "dpo.jsonl"),
                         processing_class=tokenizer_of(tiny_model))
    trainer.train()
    assert trainer.state.global_step == 2 and finite_losses(trainer)


def test_kto_trainer_trains_on_the_kto_export(sample, tiny_model, tmp_path):
    from trl import KTOConfig, KTOTrainer

    store, _ = sample
    manifest = run_export(store, ExportOptions(format="kto"), tmp_path / "kto.jsonl")
    assert manifest["counts"]["total"] == 6
    config = KTOConfig(output_dir=str(tmp_path / "out"), max_length=1024, **COMMON)
    trainer = KTOTrainer(model=model_of(tiny_model), args=config, train_dataset=load(tmp_path / "kto.jsonl"),
                         processing_class=tokenizer_of(tiny_model))
    trainer.train()
    assert trainer.state.global_step == 2 and finite_losses(trainer)
