"""Shared-prefix SFT steps compute TRL's loss and gradients, running the common start once."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def _trainer(tiny_model, rows, tmp_path, shared: bool):
    import torch  # noqa: TID251
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer
    from wilson_train import data as data_mod
    from wilson_train.base import load_tokenizer, resolve_base
    from wilson_train.shared_prefix import shared_prefix_trainer

    torch.manual_seed(0)
    tokenizer = load_tokenizer(resolve_base(str(tiny_model)))
    built, _ = data_mod.sft_rows(tokenizer, rows, 256, True)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    cls = shared_prefix_trainer(SFTTrainer) if shared else SFTTrainer
    args = SFTConfig(output_dir=str(tmp_path / ("shared" if shared else "plain")), per_device_train_batch_size=4,
                     use_cpu=True, report_to="none", assistant_only_loss=False, max_length=256, seed=0)
    peft = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj"],
                      task_type="CAUSAL_LM")
    return cls(model=model, args=args, train_dataset=Dataset.from_list(built), processing_class=tokenizer,
               peft_config=peft)


def _loss_and_grads(trainer, batch, shared: bool):
    from wilson_train.shared_prefix import shared_prefix_loss

    model = trainer.model
    model.train()
    model.zero_grad()
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
    items = (inputs["labels"][:, 1:] != -100).sum()
    if shared:
        loss = shared_prefix_loss(model, dict(inputs), items)
        assert loss is not None, "the batch shares its system prompt: the shared path must apply"
    else:
        loss = trainer.compute_loss(model, dict(inputs), num_items_in_batch=items)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss), grads


def test_a_batch_sharing_its_system_prompt_gets_the_same_loss_and_gradients(tiny_model, data_dir, tmp_path):
    import torch  # noqa: TID251

    rows = [json.loads(line) for line in (data_dir / "sft.jsonl").read_text().splitlines()][:4]
    plain = _trainer(tiny_model, rows, tmp_path, shared=False)
    shared = _trainer(tiny_model, rows, tmp_path, shared=True)
    shared.model.load_state_dict(plain.model.state_dict())
    batch = next(iter(plain.get_train_dataloader()))
    lengths = batch["attention_mask"].sum(dim=1)
    assert len(set(lengths.tolist())) > 1, "rows of different lengths: padding is exercised"
    expected_loss, expected = _loss_and_grads(plain, batch, shared=False)
    loss, grads = _loss_and_grads(shared, batch, shared=True)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert expected.keys() == grads.keys() and expected
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_rows_with_different_starts_or_a_label_at_the_start_take_trls_path():
    import torch  # noqa: TID251
    from wilson_train.shared_prefix import MIN_PREFIX, shared_prefix_length

    ids = torch.arange(40).repeat(3, 1)
    labels = torch.full_like(ids, -100)
    labels[:, 30:] = ids[:, 30:]
    assert shared_prefix_length(ids, labels, None) == 29
    ids[1, 5] = 999  # the second row differs early
    assert shared_prefix_length(ids, labels, None) == 5 < MIN_PREFIX
    labels[:, 3] = 7
    assert shared_prefix_length(torch.arange(40).repeat(3, 1), labels, None) == 2
    assert shared_prefix_length(torch.arange(40).repeat(1, 1), labels, None) == 0


def test_loss_only_evaluation_takes_the_shared_path_and_gives_trls_eval_loss(tiny_model, data_dir, tmp_path):
    from datasets import Dataset
    from wilson_train import data as data_mod
    from wilson_train.base import load_tokenizer, resolve_base

    rows = [json.loads(line) for line in (data_dir / "sft.jsonl").read_text().splitlines()][:8]
    plain = _trainer(tiny_model, rows, tmp_path, shared=False)
    shared = _trainer(tiny_model, rows, tmp_path, shared=True)
    shared.model.load_state_dict(plain.model.state_dict())
    built, _ = data_mod.sft_rows(load_tokenizer(resolve_base(str(tiny_model))), rows, 256, True)
    calls = []
    original = type(shared).compute_loss

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("return_outputs"))
        return original(self, *args, **kwargs)

    type(shared).compute_loss = counting
    try:
        got = shared.evaluate(eval_dataset=Dataset.from_list(built))
    finally:
        type(shared).compute_loss = original
    expected = plain.evaluate(eval_dataset=Dataset.from_list(built))
    assert calls == [], "every eval batch shares its system prompt: TRL's full forward must not run"
    # The shared path attends to a cached prefix, so its float32 sums run in another order
    # than the full forward's: 5.8e-5 apart (relative) in one CI run.  A dropped or shifted
    # label token moves the mean loss by much more than 1e-3.
    assert got["eval_loss"] == pytest.approx(expected["eval_loss"], rel=1e-3)
