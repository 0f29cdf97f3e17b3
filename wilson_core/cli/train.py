"""``wilson train NAME``: fine-tune a base model on an export with any installed trainer.

NAME is a ``wilson.trainers`` driver (``lora-sft``, ``lora-dpo``, ``lora-kto``,
third-party ones).  Settings come from ``[tool.wilson.train]`` in ./pyproject.toml
(and ``[tool.wilson.train.NAME]``); flags win.  The driver's cheap checks run before
any heavy library is imported.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click


def register(cli: click.Group) -> None:
    cli.add_command(train_command)


def _parse_options(values: tuple[str, ...]) -> dict[str, Any]:
    from wilson_core.interfaces import TrainError
    from wilson_core.settings import parse_key_values

    return parse_key_values(values, error=TrainError)


@click.command("train", context_settings={"show_default": True})
@click.argument("name")
@click.option("--data", help="Training JSONL (an export file).")
@click.option("--eval-data", help="Held-out JSONL for eval loss (the export's eval split).")
@click.option("--base", help="Base model: Hugging Face id, local folder, .gguf file, or smollm2-135m.")
@click.option("--out", help="Run folder (adapter/, merged/, checkpoints/, metrics.json, README.md).")
@click.option("--resume", is_flag=True, default=None, help="Continue from the last checkpoint in OUT.")
@click.option("--force", is_flag=True, default=None, help="Replace an existing OUT.")
@click.option("--epochs", type=float, help="Passes over the data [default 3].")
@click.option("--max-steps", type=int, help="Stop after this many optimiser steps (overrides --epochs).")
@click.option("--lr", type=float, help="Learning rate [default 2e-4].")
@click.option("--r", "r", type=int, help="LoRA rank [default 16].")
@click.option("--alpha", type=int, help="LoRA alpha [default 32].")
@click.option("--dropout", type=float, help="LoRA dropout [default 0.05].")
@click.option("--target-modules", help="Comma-separated module names [default: per architecture].")
@click.option("--batch-size", type=int, help="Examples per device per step [default 8].")
@click.option("--grad-accum", type=int, help="Gradient accumulation steps [default 1].")
@click.option("--max-length", type=int, help="Truncate examples to this many tokens [default 1024].")
@click.option("--warmup-ratio", type=float, help="Share of steps for linear warm-up [default 0.1].")
@click.option("--scheduler", help="Learning-rate schedule [default cosine].")
@click.option("--logging-steps", type=int, help="Print a summary line every N steps [default 10].")
@click.option("--save-steps", type=int, help="Checkpoint every N steps [default 50].")
@click.option("--seed", type=int, help="Random seed [default 0].")
@click.option("--packing/--no-packing", default=None, help="Pack examples into full rows (SFT; GPU).")
@click.option("--padding-free/--no-padding-free", default=None, help="Padding-free batches (SFT; flash attention).")
@click.option("--qlora/--no-qlora", default=None, help="Load the base in 4 bits (needs CUDA and bitsandbytes).")
@click.option("--assistant-only-loss/--all-tokens-loss", default=None,
              help="Loss on assistant tokens only [default on].")
@click.option("--merge/--no-merge", default=None, help="Also write the merged model [default on].")
@click.option("--option", "option_values", multiple=True, metavar="KEY=VALUE",
              help="Trainer-specific setting, e.g. beta=0.1 (repeatable).")
@click.option("--print-config", is_flag=True, help="Print the resolved settings as JSON and stop.")
def train_command(name: str, option_values: tuple[str, ...], print_config: bool, **flags: Any) -> None:
    """Fine-tune a LoRA adapter with trainer NAME (see 'wilson plugins' for the installed ones).

    Writes OUT/adapter, OUT/merged, OUT/metrics.json and OUT/README.md. Ctrl-C saves a
    checkpoint; --resume continues it. Many GPUs: accelerate launch $(which wilson) train ...
    (or torchrun -m wilson_core.cli train ...). See docs/fine-tune.md.
    """
    from wilson_core.converter import unstructure
    from wilson_core.interfaces import TRAINERS
    from wilson_core.plugins import load_driver
    from wilson_core.training import build_config, pyproject_settings

    flags["options"] = _parse_options(option_values) or None
    if flags.get("target_modules") is not None:
        flags["target_modules"] = [m.strip() for m in flags["target_modules"].split(",") if m.strip()]
    config = build_config(name, pyproject_settings(name), flags)
    driver = load_driver(TRAINERS, name)()
    driver.check(config)
    if print_config:
        click.echo(json.dumps(unstructure(config), indent=2))
        return
    report = driver.train(config)
    if os.environ.get("RANK", "0") != "0":  # other processes of a distributed run stay quiet
        return
    metrics = report.metrics
    state = "interrupted; checkpoint saved" if report.interrupted else "done"
    parts = [f"{k} {metrics[k]:.4g}" for k in ("train_loss", "eval_loss", "tokens_per_s") if metrics.get(k) is not None]
    click.secho(f"Training {state}: {', '.join(parts)}", bold=True)
    click.echo(f"  adapter: {report.adapter}")
    if report.merged:
        click.echo(f"  merged:  {report.merged}")
    click.echo(f"  metrics: {report.out}/metrics.json")
    if report.interrupted:
        click.echo(f"Continue with: wilson train {name} --resume --out {report.out} ...")
