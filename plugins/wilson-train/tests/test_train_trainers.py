"""Each trainer trains a tiny model for a few steps and leaves a usable run folder."""

from __future__ import annotations

import json

import pytest


def _logged(out, key):
    state = json.loads(sorted((out / "checkpoints").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    return [entry[key] for entry in state["log_history"] if key in entry]


def test_sft_loss_goes_down_on_a_small_overfit_set(sft_run):
    metrics = json.loads((sft_run / "metrics.json").read_text())
    assert metrics["steps"] == 16
    assert metrics["eval_loss"] < 0.7 * metrics["eval_loss_before"]
    assert metrics["last_loss"] < metrics["first_loss"]
    assert metrics["tokens_per_s"] > 0 and metrics["peak_rss_mb"] > 0 and metrics["wall_seconds"] > 0


def test_an_evaluation_at_the_last_step_is_not_run_again_after_training(sft_run):
    state = json.loads(sorted((sft_run / "checkpoints").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    evaluations = [e for e in state["log_history"] if "eval_loss" in e]
    metrics = json.loads((sft_run / "metrics.json").read_text())
    assert evaluations and evaluations[-1]["step"] == metrics["steps"], "the trainer evaluates at its last step"
    # the very same evaluation (its own runtime), not a second pass over the eval set
    assert metrics["eval_runtime"] == evaluations[-1]["eval_runtime"]
    assert metrics["eval_loss"] == evaluations[-1]["eval_loss"]


def test_the_run_folder_holds_adapter_merged_model_metrics_and_card(sft_run, data_dir):
    assert (sft_run / "adapter" / "adapter_config.json").exists()
    assert (sft_run / "adapter" / "adapter_model.safetensors").exists()
    merged = sft_run / "merged"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "chat_template.jinja"):
        assert (merged / name).exists(), name
    assert json.loads((merged / "config.json").read_text())["rope_theta"] == 10000.0
    tok_config = json.loads((merged / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast" and "{% generation %}" in tok_config["chat_template"]
    card = (sft_run / "README.md").read_text()
    assert "wilson train lora-sft" in card and str(data_dir / "tools.jsonl") in card and "r 16, alpha 32" in card
    assert json.loads((sft_run / "train_config.json").read_text())["max_steps"] == 16


def test_adapter_and_merged_model_reload_with_the_logits_of_base_plus_adapter(sft_run, tiny_model):
    import torch  # noqa: TID251
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 40, 300, 7, 99, 1000, 12, 3]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits
        with_adapter = PeftModel.from_pretrained(base, sft_run / "adapter").eval()
        adapter_logits = with_adapter(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(sft_run / "merged", dtype=torch.float32).eval()
        merged_logits = merged(input_ids=ids).logits
    assert (adapter_logits - base_logits).abs().max() > 1e-2  # the adapter changed something
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)


def test_dpo_reward_accuracy_rises(tiny_model, data_dir, tmp_path, make_config):
    from wilson_train.trainers import LoraDPOTrainer

    out = tmp_path / "dpo"
    data = str(data_dir / "dpo.jsonl")
    config = make_config(trainer="lora-dpo", data=data, eval_data=data, base=str(tiny_model), out=str(out),
                         max_steps=16, lr=5e-4, save_steps=16, merge=False)
    report = LoraDPOTrainer().train(config)
    metrics = report.metrics
    accuracies = _logged(out, "rewards/accuracies")
    assert len(accuracies) >= 16
    assert sum(accuracies[-4:]) / 4 > sum(accuracies[:4]) / 4
    assert metrics["eval_rewards/accuracies"] > metrics["eval_rewards/accuracies_before"]
    assert metrics["eval_rewards/accuracies"] >= 0.75
    assert metrics["eval_rewards/margins"] > metrics["eval_rewards/margins_before"]
    assert metrics["last_reward_margin"] > metrics["first_reward_margin"]
    assert report.merged is None and (out / "adapter" / "adapter_model.safetensors").exists()


def test_kto_runs_and_writes_an_adapter(tiny_model, data_dir, tmp_path, make_config):
    from wilson_train.trainers import LoraKTOTrainer

    out = tmp_path / "kto"
    config = make_config(trainer="lora-kto", data=str(data_dir / "kto.jsonl"), base=str(tiny_model), out=str(out),
                         max_steps=4, merge=False)
    report = LoraKTOTrainer().train(config)
    assert report.metrics["steps"] == 4 and report.metrics["train_loss"] == pytest.approx(report.metrics["train_loss"])
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((out / "metrics.json").read_text())["trainer"] == "kto"


def test_resume_continues_from_the_last_checkpoint(tiny_model, data_dir, tmp_path, make_config):
    from wilson_train.trainers import LoraSFTTrainer

    from wilson_core.interfaces import TrainError

    out = tmp_path / "resumable"
    first = make_config(trainer="lora-sft", data=str(data_dir / "sft.jsonl"), base=str(tiny_model), out=str(out),
                        max_steps=2, save_steps=2, merge=False)
    LoraSFTTrainer().train(first)
    assert (out / "checkpoints" / "checkpoint-2").exists()
    with pytest.raises(TrainError, match="--force"):
        LoraSFTTrainer().train(first)
    # a process killed while saving the next checkpoint leaves a folder without trainer_state.json:
    # resume skips it and continues from the last complete one
    (out / "checkpoints" / "checkpoint-3").mkdir()
    (out / "checkpoints" / "checkpoint-3" / "adapter_config.json").write_text("{", encoding="utf-8")
    again = make_config(trainer="lora-sft", data=str(data_dir / "sft.jsonl"), base=str(tiny_model), out=str(out),
                        max_steps=4, save_steps=2, merge=False, resume=True)
    report = LoraSFTTrainer().train(again)
    assert report.metrics["steps"] == 4
    steps = [e["step"] for e in json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert steps[:2] == [1, 2] and steps[-1] == 4  # one history: the second run went on from step 2


@pytest.mark.parametrize("mode", ["packing", "padding_free"])
def test_packing_and_padding_free_batches_train(tiny_model, data_dir, tmp_path, make_config, mode):
    from wilson_train.trainers import LoraSFTTrainer

    config = make_config(trainer="lora-sft", data=str(data_dir / "sft.jsonl"), base=str(tiny_model),
                         out=str(tmp_path / mode), max_steps=2, batch_size=2, merge=False, **{mode: True})
    report = LoraSFTTrainer().train(config)
    assert report.metrics["steps"] == 2 and report.metrics["train_loss"] > 0


def test_neftune_noise_is_passed_to_trl_and_changes_training(tiny_model, data_dir, tmp_path, make_config):
    from wilson_train.trainers import LoraSFTTrainer

    losses = {}
    for alpha in (None, 5.0):
        options = {} if alpha is None else {"neftune_noise_alpha": alpha}
        config = make_config(trainer="lora-sft", data=str(data_dir / "tools.jsonl"), base=str(tiny_model),
                             out=str(tmp_path / f"neft-{alpha}"), max_steps=4, max_length=512, merge=False,
                             options=options)
        losses[alpha] = LoraSFTTrainer().train(config).metrics["train_loss"]
    assert losses[5.0] != losses[None]  # the noise reached the embeddings (same seed, same data)
