"""``wilson plugins``: hook implementations and drivers, with distributions and versions."""

from __future__ import annotations

import click

from ._common import echo_json, json_option


def register(cli: click.Group) -> None:
    cli.add_command(plugins_command)


@click.command("plugins")
@json_option
def plugins_command(as_json: bool) -> None:
    """List installed plugins: hooks they implement and named drivers."""
    from wilson_core.interfaces import NAMESPACES
    from wilson_core.plugins import describe_plugins

    data = describe_plugins()
    if as_json:
        echo_json(data)
        return
    click.secho("Hook plugins (entry-point group 'wilson'):", bold=True)
    for plugin in data["hooks"]:
        click.echo(f"  {plugin['name']:<18} {plugin['distribution']} {plugin['version']}")
        click.echo(f"  {'':<18} hooks: {', '.join(plugin['hooks']) or '(none)'}")
    for namespace, drivers in data["drivers"].items():
        click.secho(f"{namespace}: {NAMESPACES[namespace]}", bold=True)
        if not drivers:
            click.echo("  (none installed)")
        for d in drivers:
            click.echo(f"  {d['name']:<18} {d['distribution']} {d['version']}  ({d['target']})")
