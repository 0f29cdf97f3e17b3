"""``wilson setup``: install the Node packages that plugins run, ahead of first use."""

from __future__ import annotations

import click

from ._common import echo_json, json_option


def register(cli: click.Group) -> None:
    cli.add_command(setup_command)


def node_packages() -> list:
    """Every :class:`~wilson_core.noderuntime.NodePackage` the installed plugins declare."""
    from wilson_core import plugins

    found = []
    for items in plugins.hook().wilson_node_packages():
        found.extend(items or [])
    return sorted(found, key=lambda p: p.name)


@click.command("setup")
@click.option("--check", is_flag=True, help="Only say what is installed; install nothing.")
@json_option
def setup_command(check: bool, as_json: bool) -> None:
    """Install the Node packages plugins run (llama.cpp, Transformers.js) into $WILSON_CACHE_DIR.

    Without it they are installed on first use.  Needs Node.js 20+ and npm.
    """
    from wilson_core.errors import WilsonError
    from wilson_core.noderuntime import NodeRuntimeError, ensure

    report = []
    failed = []
    for package in node_packages():
        entry = {"name": package.name, "marker": package.marker, "purpose": package.purpose,
                 "folder": str(package.folder())}
        if check:
            entry["installed"] = package.ready()
            entry["problem"] = package.problem()
        else:
            try:
                entry["folder"] = str(ensure(package, say=lambda m: click.echo(m, err=True)))
                entry["installed"] = True
            except NodeRuntimeError as exc:
                entry["installed"] = False
                entry["problem"] = str(exc)
                failed.append(f"{package.name}: {exc}")
        report.append(entry)
    if as_json:
        echo_json(report)
    elif not report:
        click.echo("no installed plugin runs Node packages (wilson-gguf and wilson-onnx do)")
    else:
        for entry in report:
            state = "ready" if entry["installed"] else f"not installed: {entry.get('problem') or ''}"
            click.echo(f"{entry['name']}: {entry['marker']} for {entry['purpose']}: {state} ({entry['folder']})")
    if failed:
        raise WilsonError("could not install Node packages:\n  " + "\n  ".join(failed))
