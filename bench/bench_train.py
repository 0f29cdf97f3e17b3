"""Benchmark: ``wilson train lora-sft`` against a plain TRL script, same model, data and settings.

    .venv/bin/python bench/bench_train.py                 # tiny Llama on CPU (2 threads)
    .venv/bin/python bench/bench_train.py --size 0.5b     # random ~0.5B Qwen2 in bf16 (GPU)
    .venv/bin/python bench/bench_train.py --quick         # 8 steps, two runs each (order swapped), no warm-up

Both sides run in fresh subprocesses, alternating, ``--repeats`` times each; the
median training throughput (trained tokens / training seconds) is compared.
Wilson's wrapping (cheap checks, its own tokenisation, callbacks, metrics) must
cost nothing: the target is a ratio >= 0.95.  Tokens per CPU-second of the training
process are printed too: on a shared, busy machine wall-clock throughput swings by 2x
between runs, CPU time much less.  Peak memory (RSS; GPU peak when on
CUDA) is reported for each side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import Report, Target, add_arguments, apply_quick

HERE = Path(__file__).resolve().parent

# One training run of plain TRL (what a user would write without Wilson).
PLAIN_TRL = r"""
import json, resource, sys, time
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from trl import SFTConfig, SFTTrainer

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
cuda = torch.cuda.is_available()
bf16 = cuda and torch.cuda.is_bf16_supported()
tokenizer = PreTrainedTokenizerFast.from_pretrained(args["base"])
model = AutoModelForCausalLM.from_pretrained(args["base"], dtype=torch.bfloat16 if bf16 else torch.float32)
rows = [json.loads(line) for line in open(args["data"])]
dataset = Dataset.from_list(rows)
config = SFTConfig(
    output_dir=args["out"], max_steps=args["steps"], learning_rate=2e-4, lr_scheduler_type="cosine",
    warmup_steps=0.1, per_device_train_batch_size=args["batch"], gradient_accumulation_steps=1,
    logging_steps=10, save_strategy="no", report_to="none", use_cpu=not cuda, bf16=bf16, fp16=False,
    gradient_checkpointing=cuda, max_length=args["max_length"], assistant_only_loss=True, seed=0,
    dataloader_num_workers=0,
)
peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                         task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
start, cpu_start = time.perf_counter(), time.process_time()
result = trainer.train()
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
# examples actually seen (the last batch of an epoch may be short): the same count Wilson's metrics use
examples = min(args["steps"] * args["batch"], int(len(lengths) * trainer.state.epoch) or args["steps"] * args["batch"])
tokens = sum(lengths) * examples / len(lengths)
out = {"tokens_per_s": tokens / seconds, "train_seconds": seconds, "tokens_per_cpu_s": tokens / cpu_seconds,
       "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
       "train_loss": result.metrics["train_loss"]}
if cuda:
    out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
print("RESULT " + json.dumps(out))
"""

# The same run through Wilson's trainer driver (what `wilson train lora-sft` calls).
WILSON = r"""
import json, sys
import torch
from wilson_core.training import build_config
from wilson_train.trainers import LoraSFTTrainer

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
config = build_config("lora-sft", {}, {
    "data": args["data"], "base": args["base"], "out": args["out"], "force": True, "max_steps": args["steps"],
    "batch_size": args["batch"], "max_length": args["max_length"], "logging_steps": 10, "save_steps": 10**6,
    "merge": False, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
})
report = LoraSFTTrainer().train(config)
m = report.metrics
out = {"tokens_per_s": m["tokens_per_s"], "train_seconds": m["train_seconds"], "peak_rss_mb": m["peak_rss_mb"],
       "tokens_per_cpu_s": m["tokens_seen"] / m["train_cpu_seconds"],
       "train_loss": m["train_loss"]}
if "peak_gpu_mb" in m:
    out["peak_gpu_mb"] = m["peak_gpu_mb"]
print("RESULT " + json.dumps(out))
"""


def run_child(code: str, args: dict, env_extra: dict | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args["threads"]), "TOKENIZERS_PARALLELISM": "false",
           **(env_extra or {})}
    result = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env)
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"child failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")


def build_base(folder: Path, size: str) -> Path:
    from wilson_train.tiny import build_tiny_model

    if size == "tiny":
        return build_tiny_model(folder / "base", arch="llama", pretrain_steps=30)
    # a randomly initialised Qwen2 of Qwen2.5-0.5B's shape (its 151,936-row vocabulary included)
    path = build_tiny_model(folder / "base-small", arch="qwen2")
    import torch  # noqa: TID251
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config
    from wilson_train.saving import save_model_folder

    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    config = Qwen2Config(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4864, max_position_embeddings=4096,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    print(f"random Qwen2: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters")
    return save_model_folder(model, tokenizer, folder / "base-0.5b")


def write_data(path: Path, n: int) -> Path:
    """Identical data for both sides: categorisation chats plus tool-calling chats whose calls all
    have the same argument keys (mixed keys would reach plain TRL through Arrow's struct union
    as extra null arguments, i.e. different, longer training text)."""
    from wilson_train.corpus import categorisation_conversations, tool_conversations

    rows = [{"messages": c} for c in categorisation_conversations(n, seed=1)]
    for example in tool_conversations(n // 2, seed=2):
        if example["messages"][2]["tool_calls"][0]["function"]["name"] == "categorize_transaction":
            rows.append({"messages": example["messages"]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_app_data(path: Path, n: int) -> Path:
    """An app's own traffic: every call starts with the same system prompt (the demo's finance app)."""
    from wilson_core.demo import finance

    rows = [{"messages": [*finance.categorise_messages(line), {"role": "assistant", "content": category}]}
            for line, category in finance.transactions(n, seed=5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def shared_prefix_rows(report: Report, base: Path, folder: Path, options: argparse.Namespace) -> None:
    """Wilson with its shared-prefix SFT steps against the same runs with them off
    (``WILSON_SHARED_PREFIX=0``: TRL's own forward), on data that shares a system prompt."""
    data = write_app_data(folder / "app.jsonl", 64)
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for repeat in range(options.repeats):
        order = ["on", "off"] if repeat % 2 == 0 else ["off", "on"]
        for name in order:
            args = {"base": str(base), "data": str(data), "out": str(folder / f"prefix-{name}-{repeat}"),
                    "steps": options.steps, "batch": options.batch, "threads": options.threads,
                    "max_length": options.max_length}
            result = run_child(WILSON, args, {"WILSON_SHARED_PREFIX": "1" if name == "on" else "0"})
            runs[name].append(result)
            print(f"  shared prefix {name:<3} run {repeat + 1}: {result['tokens_per_s']:8.1f} tokens/s, "
                  f"{result['train_seconds']:.2f} s, loss {result['train_loss']:.5f}")

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    report.add(
        "shared-prefix SFT steps",
        f"wilson train lora-sft on an app's traffic (one system prompt), shared prefix run once per batch "
        f"against the same runs with it off ({options.size} base, {options.steps} steps x batch {options.batch}, "
        f"median of {options.repeats})",
        median("on", "tokens_per_s"), unit="tokens/s", baseline=median("off", "tokens_per_s"),
        baseline_name="WILSON_SHARED_PREFIX=0", target=Target("ratio", ">=", 1.0),
        peak_rss_mib=max(r["peak_rss_mb"] for r in runs["on"]),
        baseline_peak_rss_mib=max(r["peak_rss_mb"] for r in runs["off"]),
        note=f"train loss {median('on', 'train_loss'):.5f} vs {median('off', 'train_loss'):.5f} (the same computation, up to float rounding)",
        extra={"runs": runs},
    )


QUICK = {"steps": 8, "repeats": 2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "0.5b"], default="tiny")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    add_arguments(parser)
    options = parser.parse_args()
    apply_quick(parser, options, QUICK)  # fewer steps and runs unless given explicitly; no warm-up, the order alternates instead
    report = Report.from_args("train", options)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = build_base(folder, options.size)
        data = write_data(folder / "train.jsonl", 64)
        results: dict[str, list[dict]] = {"wilson": [], "trl": []}
        started = time.perf_counter()
        if not options.quick:
            for name, code in (("wilson", WILSON), ("trl", PLAIN_TRL)):  # warm-up (caches, CUDA kernels): discarded
                run_child(code, {"base": str(base), "data": str(data), "out": str(folder / f"{name}-warmup"),
                                 "steps": max(2, options.steps // 4), "batch": options.batch,
                                 "threads": options.threads, "max_length": options.max_length})
        for repeat in range(options.repeats):
            order = [("wilson", WILSON), ("trl", PLAIN_TRL)]
            if repeat % 2:
                order.reverse()
            for name, code in order:
                args = {"base": str(base), "data": str(data), "out": str(folder / f"{name}-{repeat}"),
                        "steps": options.steps, "batch": options.batch, "threads": options.threads,
                        "max_length": options.max_length}
                result = run_child(code, args)
                results[name].append(result)
                print(f"  {name:<6} run {repeat + 1}: {result['tokens_per_s']:8.1f} tokens/s, "
                      f"{result['tokens_per_cpu_s']:8.1f} tokens/CPU-s, "
                      f"{result['train_seconds']:.2f} s, loss {result['train_loss']:.4f}, "
                      f"peak RSS {result['peak_rss_mb']:.0f} MB"
                      + (f", peak GPU {result['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in result else ""))
        print(f"\nbase {options.size}, {options.steps} steps x batch {options.batch}, {options.repeats} runs each "
              f"({time.perf_counter() - started:.0f} s)")

        def median(name: str, key: str) -> float:
            return statistics.median(r[key] for r in results[name])

        def peak(name: str, key: str) -> float | None:
            values = [r[key] for r in results[name] if key in r]
            return max(values) if values else None

        setting = (f"{options.size} base, LoRA r16 q/k/v/o, {options.steps} steps x batch {options.batch}, "
                   f"{options.threads} threads, median of {options.repeats} fresh processes each")
        gpu = {name: peak(name, "peak_gpu_mb") for name in results}
        report.add(
            "LoRA SFT training throughput",
            f"wilson train lora-sft tokens/s against a plain TRL SFTTrainer script ({setting})",
            median("wilson", "tokens_per_s"), unit="tokens/s", baseline=median("trl", "tokens_per_s"),
            baseline_name="plain TRL script", target=Target("ratio", ">=", 0.95),
            peak_rss_mib=peak("wilson", "peak_rss_mb"), baseline_peak_rss_mib=peak("trl", "peak_rss_mb"),
            note=f"train loss {median('wilson', 'train_loss'):.4f} vs {median('trl', 'train_loss'):.4f}"
                 + (f"; peak GPU {gpu['wilson']:.0f} MB vs {gpu['trl']:.0f} MB" if gpu["wilson"] else ""),
            extra={"runs": results, "peak_gpu_mb": gpu},
        )
        report.add(
            "LoRA SFT tokens per CPU-second",
            f"the same runs, tokens per CPU-second of the training process ({setting})",
            median("wilson", "tokens_per_cpu_s"), unit="tokens/CPU-s",
            baseline=median("trl", "tokens_per_cpu_s"), baseline_name="plain TRL script",
            peak_rss_mib=peak("wilson", "peak_rss_mb"), baseline_peak_rss_mib=peak("trl", "peak_rss_mb"),
            note="less sensitive than wall time to other work on a shared machine",
        )
        shared_prefix_rows(report, base, folder, options)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
