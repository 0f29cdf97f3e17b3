"""``wilson pipeline run|validate``: the loop from ``[tool.wilson.pipeline]`` in pyproject.toml."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wilson_core.pipeline import STAGES

if TYPE_CHECKING:
    from wilson_core.pipeline.config import PipelineConfig


def register(cli: click.Group) -> None:
    cli.add_command(pipeline_group)


@click.group("pipeline")
def pipeline_group() -> None:
    """Run export -> train -> evaluate -> gate -> deploy as configured in pyproject.toml.

    The table [tool.wilson.pipeline] names each stage's driver by its entry point
    (see 'wilson plugins') with its options; see docs/pipeline.md.
    """


def _config(ctx: click.Context, config_path: str) -> PipelineConfig:
    """The checked table; the global ``--db`` (or ``$WILSON_DB``) wins over its ``db``."""
    from wilson_core.pipeline.config import load

    return load(config_path, (ctx.find_root().obj or {}).get("db"))


def _open(config: PipelineConfig) -> Any:
    from wilson_core.store import open_store

    return open_store(config.db)


_CONFIG = click.option("--config", "config_path", default="pyproject.toml", show_default=True,
                       type=click.Path(dir_okay=False), help="The pyproject.toml holding [tool.wilson.pipeline].")


@pipeline_group.command("validate")
@_CONFIG
@click.pass_context
def validate_command(ctx: click.Context, config_path: str) -> None:
    """Check the table (names, options, types) without running anything."""
    _config(ctx, config_path)
    click.echo(f"{config_path}: [tool.wilson.pipeline] is valid")


@pipeline_group.command("run")
@_CONFIG
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@click.option("--from", "start", type=click.Choice(STAGES), default="export", show_default=True,
              help="Continue the last run (or --run) from this stage; --from train resumes a checkpoint.")
@click.option("--to", "stop", type=click.Choice(STAGES), default=STAGES[-1], show_default=True,
              help="Stop after this stage (continue later with --from the next one).")
@click.option("--run", "run_name", help="The run folder to continue (default: the latest).")
@click.option("--if-new-labels", type=click.IntRange(min=0), metavar="N",
              help="Do nothing unless at least N labels were added since the last run.")
@click.pass_context
def run_command(ctx: click.Context, config_path: str, dry_run: bool, start: str, stop: str, run_name: str | None,
                if_new_labels: int | None) -> None:
    """Run the pipeline; every artefact goes under one run folder, one summary at the end."""
    from wilson_core.pipeline import runner, summary
    from wilson_core.pipeline.runner import describe_stage, labels_since_last_run
    from wilson_core.store.registry import Registry

    config = _config(ctx, config_path)
    if STAGES.index(stop) < STAGES.index(start):
        raise click.BadParameter(f"{stop!r} comes before --from {start}", param_hint="--to")
    store = _open(config)
    registry = Registry(store)
    new_labels, last = labels_since_last_run(config, registry)
    if dry_run:
        from wilson_core.interfaces import DEPLOYERS, EVALUATORS, EXPORTERS, TRAINERS
        from wilson_core.plugins import driver_entry_points

        def origin(namespace: str, name: str) -> str:
            info = next((i for i in driver_entry_points(namespace) if i.name == name), None)
            return f"{info.distribution} {info.version}" if info else "?"

        click.echo(f"Plan ({config_path}); database {store.path}; runs under {config.runs}")
        for number, stage in enumerate(STAGES[STAGES.index(start):STAGES.index(stop) + 1], STAGES.index(start) + 1):
            click.echo(f"  [{number}/{len(STAGES)}] {describe_stage(config, stage)}")
        click.echo("Drivers:")
        for namespace, names in ((EXPORTERS, config.formats), (TRAINERS, [config.trainer]),
                                 (EVALUATORS, list(config.evaluators)), (DEPLOYERS, list(config.deployers))):
            for name in names:
                click.echo(f"  {namespace:<18} {name:<16} {origin(namespace, name)}")
        sets = ", ".join(f"{k} = {v}" for k, v in config.sets.items())
        click.echo(f"Eval sets: {sets}")
        click.echo(f"Reference: {registry.live() or 'the base model (no model is live yet)'}")
        click.echo(f"New labels since {'run ' + last if last else 'the start'}: {new_labels}")
        return
    if if_new_labels is not None and new_labels < if_new_labels:
        since = f"the last run ({last})" if last else "the start"
        click.echo(f"{new_labels} new label(s) since {since}; --if-new-labels {if_new_labels}: nothing to do")
        return
    try:
        run = runner.run_pipeline(config, store, start=start, run_name=run_name, stop=stop)
    except KeyboardInterrupt:
        raise runner.PipelineInterrupted(
            "interrupted; continue with 'wilson pipeline run --from STAGE' (training resumes its checkpoint)"
        ) from None
    click.echo("")
    click.echo(summary.write(run))
    click.echo(f"\nsummary: {Path(run.folder) / 'summary.md'}")


@pipeline_group.command("ab")
@_CONFIG
@click.option("--run", "run_name", help="The evaluated run whose answers to review (default: the latest).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many items.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the order answers are shown in.")
@click.pass_context
def ab_command(ctx: click.Context, config_path: str, run_name: str | None, limit: int | None, seed: int) -> None:
    """Put a run's held-out answers up for blind A/B review (the dashboard's A/B tab)."""
    from wilson_core.pipeline.ab import prepare
    from wilson_core.pipeline.runner import PipelineError, run_folders

    config = _config(ctx, config_path)
    folders = run_folders(config.runs)
    if run_name is not None:
        folder = config.runs / run_name
        if folder not in folders:
            raise PipelineError(f"no pipeline run {run_name!r} in {config.runs}")
    elif folders:
        folder = folders[-1]
    else:
        raise PipelineError(f"no pipeline run in {config.runs} yet")
    made = prepare(_open(config), folder, limit=limit, seed=seed)
    click.echo(f"{made['items']} new A/B item(s) from run {folder.name} ({made['kept']} already there, "
               f"{made['skipped_identical']} skipped: every answer the same); review them with 'wilson dashboard'")


@pipeline_group.command("demo")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="A new folder for everything.")
@click.option("--base", help="Base model (default: a tiny model built in OUT/base with 'wilson model init').")
@click.option("--count", type=click.IntRange(min=20), default=120, show_default=True,
              help="Transactions captured before round 1.")
@click.option("--more", type=click.IntRange(min=1), default=120, show_default=True,
              help="More transactions captured before round 2.")
@click.option("--steps", type=click.IntRange(min=1), default=30, show_default=True, help="LoRA steps per round.")
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--heldout", type=click.IntRange(min=1), default=24, show_default=True,
              help="Held-out transactions per fixed set (seen / new merchants).")
@click.option("--deploy", "deployers", multiple=True, type=click.Choice(["gguf", "transformersjs", "ollama"]),
              help="Deployers named in the table (repeatable; they run when a round is promoted).")
@click.option("--seed", type=int, default=0, show_default=True)
def demo_command(out_dir: str, base: str | None, count: int, more: int, steps: int, lr: float, heldout: int,
                 deployers: tuple[str, ...], seed: int) -> None:
    """The demo's finance app in two rounds through 'wilson pipeline run' (OUT/pyproject.toml)."""
    from wilson_core.pipeline import demo

    out = Path(out_dir).resolve()
    if base is None:
        from wilson_core.cli import main

        base = str(out / "base")
        code = main(["model", "init", "--arch", "llama", "--out", base, "--pretrain-steps", "150",
                     "--seed", str(seed), "--force"])
        if code != 0:
            raise click.ClickException("could not build the tiny base model ('wilson model init')")
    elif Path(base).exists():
        base = str(Path(base).resolve())
    demo.run(out, base=base, count=count, more=more, steps=steps, lr=lr, heldout=heldout, seed=seed,
             deployers=deployers)
