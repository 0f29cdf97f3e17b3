"""CLI commands of the plugin: ``wilson model init`` and ``wilson eval``.

Registered through the ``wilson_register_commands`` hook; heavy libraries are
imported only when a command runs.
"""

from __future__ import annotations

import click

import wilson_core


@click.group("model")
def model_group() -> None:
    """Local base models (tiny models built on this machine)."""


@model_group.command("init")
@click.option("--arch", type=click.Choice(["llama", "qwen2"]), default="llama", show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to create.")
@click.option("--corpus", type=click.Path(dir_okay=False), help="Text file, one document per line (default: built-in).")
@click.option("--vocab-size", type=int, default=2048, show_default=True)
@click.option("--hidden-size", type=int, default=128, show_default=True)
@click.option("--layers", type=int, default=2, show_default=True)
@click.option("--heads", type=int, default=4, show_default=True)
@click.option("--kv-heads", type=int, default=2, show_default=True)
@click.option("--intermediate", type=int, default=256, show_default=True)
@click.option("--pretrain-steps", type=int, default=0, show_default=True,
              help="Full-parameter pre-training steps on the corpus (150 gives LoRA something to build on).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite a non-empty output folder.")
def model_init(arch: str, out_dir: str, corpus: str | None, vocab_size: int, hidden_size: int,
               layers: int, heads: int, kv_heads: int, intermediate: int, pretrain_steps: int,
               seed: int, force: bool) -> None:
    """Build a byte-level BPE tokenizer, a chat template and a small model in OUT."""
    from pathlib import Path

    from wilson_core.errors import WilsonError

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise WilsonError(f"{out} already exists and is not empty (use --force to overwrite)")
    if corpus is not None and not Path(corpus).is_file():
        raise WilsonError(f"corpus file not found: {corpus}")
    from .tiny import build_tiny_model

    path = build_tiny_model(
        out, arch=arch, corpus=corpus, vocab_size=vocab_size, hidden_size=hidden_size,
        layers=layers, heads=heads, kv_heads=kv_heads, intermediate=intermediate,
        pretrain_steps=pretrain_steps, seed=seed,
    )
    import json

    card = json.loads((path / "wilson_model.json").read_text())
    loss = card.get("pretrain_loss_last")
    extra = f", pre-training loss {card['pretrain_loss_first']:.2f} -> {loss:.2f}" if loss else ""
    click.echo(f"{arch} model with {card['parameters']:,} parameters, vocab {card['vocab_size']}{extra}: {path}")


@click.command("eval")
@click.option("--data", "data", required=True, multiple=True,
              help="Held-out sft-format JSONL (the eval split of an export). Repeat it to score several files "
                   "in one run, each reported on its own (named by file stem, or NAME=FILE).")
@click.option("--base", required=True, help="Base model (HF id, folder, .gguf, smollm2-135m).")
@click.option("--tuned", required=True, type=click.Path(file_okay=False),
              help="Run folder from 'wilson train', a merged model folder, or an adapter folder.")
@click.option("--samples", type=int, default=0, show_default=True, help="Show N examples where the models disagree.")
@click.option("--limit", type=int, help="Evaluate only the first N examples of each file.")
@click.option("--max-new-tokens", type=int, default=128, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Examples generated (and scored) together in one padded batch.")
@click.option("--log-likelihood/--no-log-likelihood", default=True, show_default=True,
              help="Also score the reference answers by teacher forcing (one more forward pass per batch).")
@click.option("--judge", "judge_provider", help="Also score answers 1-5 with this facade provider (NAME:MODEL).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the full report as JSON here.")
@click.option("--evaluator", "evaluators", multiple=True, metavar='NAME[:{"KEY": VALUE}]',
              help="Also score with this wilson.evaluators driver (repeatable; options as a JSON object).")
def eval_command(data: tuple[str, ...], base: str, tuned: str, samples: int, limit: int | None,
                 max_new_tokens: int, batch_size: int, log_likelihood: bool, judge_provider: str | None,
                 json_out: str | None, evaluators: tuple[str, ...] = ()) -> None:
    """Compare the base and the tuned model: exact match, token F1, tool calls, log-likelihood."""
    import json
    from pathlib import Path

    from wilson_core.training import check_data

    from .evaluate import compare, data_files, format_table

    files = data_files(data)
    for _, path in files:
        check_data(path, "sft", "wilson eval")
    if not Path(tuned).is_dir():
        raise click.BadParameter(f"{tuned}: no such folder", param_hint="--tuned")
    configured = None
    if evaluators:  # named evaluators: checked before any model is loaded
        from wilson_core.evaluators.running import load_evaluators, parse_evaluator_args

        configured = parse_evaluator_args(evaluators)
        load_evaluators(configured)
    report = compare(data, base, tuned, limit=limit, max_new_tokens=max_new_tokens, judge_provider=judge_provider,
                     samples=samples, batch_size=batch_size, log_likelihood=log_likelihood)
    click.echo(format_table(report))
    click.echo(f"{report['disagreements']} of {report['models']['base']['examples']} answers differ")
    for label, spent in report["timing"].items():
        click.echo(f"{label}: loaded in {spent['load_s']:.1f} s, evaluated in {spent['eval_s']:.1f} s")
    for number, sample in enumerate(report["samples"], 1):
        where = f"({sample['subset']}) " if len(files) > 1 else ""
        click.secho(f"\n[{number}] {where}{sample['question']}", bold=True)
        click.echo(f"  reference: {sample['reference']}")
        click.echo(f"  base:      {sample['base']}")
        click.echo(f"  tuned:     {sample['tuned']}")
    if configured:
        from wilson_core.evaluators.running import evaluate_files

        found = evaluate_files(files, {"base": f"transformers:{base}", "tuned": f"transformers:{tuned}"}, configured,
                               limit=limit, max_tokens=max_new_tokens, judge=judge_provider)
        click.echo("\n" + found["table"])
        report["evaluators"] = found["scores"]
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"report: {json_out}")
    from wilson_core.modelcard import update_eval_section

    card = update_eval_section(tuned, report, data=[path for _, path in files])
    if card is not None:
        click.echo(f"model card: {card} (evaluation table added)")


@wilson_core.hookimpl
def wilson_register_commands(cli: click.Group) -> None:
    cli.add_command(model_group)
    cli.add_command(eval_command)
