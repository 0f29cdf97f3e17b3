"""Hook implementations: the ``wilson dashboard`` command and the dashboard annotation source.

Kept light: starlette, uvicorn and jinja2 are imported only when the command runs.
"""

from __future__ import annotations

import click

from wilson_core import hookimpl

DEFAULT_PORT = 3141


@hookimpl
def wilson_annotation_sources() -> list[dict[str, str]]:
    return [
        {
            "name": "dashboard",
            "kind": "human",
            "description": "the Training tab of `wilson dashboard`: stars, pairs, corrections, tags, "
            "judge proposals",
        }
    ]


@hookimpl
def wilson_register_commands(cli: click.Group) -> None:
    cli.add_command(dashboard_command)


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port (0 picks a free one).")
@click.option("--token", envvar="WILSON_DASHBOARD_TOKEN", help="Access token (default: a random one).")
@click.option("--annotator", default="local", show_default=True, help="Name stored with your labels.")
@click.option(
    "--regenerate-with",
    "regenerate_provider",
    metavar="NAME:MODEL",
    help="Provider the 'g' key asks for an alternative answer (default: ask in the page).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
@click.pass_context
def dashboard_command(
    ctx: click.Context,
    host: str,
    port: int,
    token: str | None,
    annotator: str,
    regenerate_provider: str | None,
    open_browser: bool,
) -> None:
    """Review, rate, pair and correct captured interactions in your browser (Training tab)."""
    from .server import serve

    db = (ctx.find_root().obj or {}).get("db")
    serve(
        db=db,
        host=host,
        port=port,
        token=token,
        annotator=annotator,
        regenerate_provider=regenerate_provider,
        open_browser=open_browser,
    )
