"""``wilson models``: the model registry (lineage, scores, deployments, the live model).

``wilson models`` lists, ``show ID`` traces a model to its interactions and label
versions, ``promote ID`` and ``rollback`` switch the live model by hand.
"""

from __future__ import annotations

from typing import Any

import click

from ._common import echo_json, open_db


def register(cli: click.Group) -> None:
    cli.add_command(models_group)


def _registry(ctx: click.Context) -> Any:
    from wilson_core.store.registry import Registry

    return Registry(open_db(ctx))


def _scores_line(scores: list[dict[str, Any]]) -> str:
    parts = [f"{s['eval_set']}/{s['evaluator']} {s['value']:.3f}" for s in scores
             if s["value"] is not None and s["eval_set"] == "all"]
    return ", ".join(parts) or "-"


@click.group("models", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
@click.pass_context
def models_group(ctx: click.Context, as_json: bool) -> None:
    """Trained models: base, export, settings, scores, deployments; * marks the live one."""
    if ctx.invoked_subcommand is not None:
        return
    entries = _registry(ctx).models()
    if as_json:
        echo_json([e.describe() for e in entries])
        return
    if not entries:
        click.echo("No models yet: 'wilson pipeline run' trains and registers them.")
        return
    for e in entries:
        mark = "*" if e.live else " "
        counts = e.export_counts
        settings = ", ".join(f"{k} {v}" for k, v in sorted(e.train_settings.items()) if k != "base")
        click.secho(f"{mark} {e.id}  {e.status:<11} {e.created_at[:19]}  run {e.pipeline_run or '-'}",
                    bold=e.live)
        click.echo(f"    base {e.base}; {e.trainer} ({settings or 'defaults'})")
        click.echo(f"    export {e.export_hash[:12]}: {counts.get('train', 0)} train / {counts.get('eval', 0)} eval")
        click.echo(f"    scores {_scores_line(list(e.scores))}")
        if e.deployments:
            click.echo("    deployed " + ", ".join(f"{d['target']} ({d['out']})" for d in e.deployments))
        if e.gate:
            click.echo(f"    gate: {e.gate.get('reason')}")


@models_group.command("show")
@click.argument("model_id")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON (with every interaction).")
@click.option("--limit", type=int, default=10, show_default=True, help="Interactions listed per split.")
@click.pass_context
def show_command(ctx: click.Context, model_id: str, as_json: bool, limit: int) -> None:
    """One model: settings, scores, deployments, events and its exact training data."""
    registry = _registry(ctx)
    entry = registry.get(model_id)
    examples = registry.examples(entry.id)
    if as_json:
        echo_json({**entry.describe(), "examples": examples, "events": registry.events(entry.id)})
        return
    click.secho(f"{entry.id}{'  (live)' if entry.live else ''}  status {entry.status}", bold=True)
    click.echo(f"  base:     {entry.base}")
    click.echo(f"  trainer:  {entry.trainer}")
    for key, value in sorted(entry.train_settings.items()):
        click.echo(f"    {key} = {value}")
    click.echo(f"  folder:   {entry.path}")
    click.echo(f"  export:   {entry.export_manifest} (hash {entry.export_hash[:16]})")
    click.echo("  scores:")
    for s in entry.scores:
        if s["value"] is not None:
            click.echo(f"    {s['eval_set']:<12} {s['evaluator']:<18} {s['value']:.3f} "
                       f"[{s['low']:.2f}, {s['high']:.2f}] n={s['count']}")
    for d in entry.deployments:
        click.echo(f"  deployed: {d['target']} -> {d['out']} ({d['provider'] or 'no provider'})")
    for event in registry.events(entry.id):
        click.echo(f"  {event['created_at'][:19]}  {event['action']:<11} {event['reason'] or ''}")
    for split in ("train", "eval"):
        rows = [r for r in examples if r["split"] == split]
        labelled = sum(1 for r in rows if r["annotation_id"])
        click.echo(f"  {split}: {len(rows)} interactions ({labelled} with a label)")
        for r in rows[:limit]:
            label = f"label {r['annotation_id']} v{r['label_version']}" if r["annotation_id"] else "no label"
            click.echo(f"    {r['interaction_id']}  {label}")
        if len(rows) > limit:
            click.echo(f"    ... {len(rows) - limit} more (--limit, or --json for all)")


@models_group.command("promote")
@click.argument("model_id")
@click.pass_context
def promote_command(ctx: click.Context, model_id: str) -> None:
    """Make MODEL_ID the live model (whatever the gate said)."""
    registry = _registry(ctx)
    full = registry.resolve(model_id)
    previous = registry.promote(full)
    click.echo(f"{full} is live" + (f" (was {previous})" if previous and previous != full else ""))


@models_group.command("rollback")
@click.pass_context
def rollback_command(ctx: click.Context) -> None:
    """Make the model that was live before the current one live again."""
    current, now = _registry(ctx).rollback()
    click.echo(f"rolled back {current}; {now} is live")
