"""Serving the dashboard: pick the token, print the URL, run uvicorn."""

from __future__ import annotations

import secrets
import socket
import sys

import click

from wilson_core.hosts import is_loopback
from wilson_core.store import default_db_path, search


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host.strip("[]"), 0))
        return sock.getsockname()[1]


def serve(
    *,
    db: str | None,
    host: str = "127.0.0.1",
    port: int = 3141,
    token: str | None = None,
    annotator: str = "local",
    regenerate_provider: str | None = None,
    open_browser: bool = False,
) -> None:
    """Run the dashboard until Ctrl-C."""
    import uvicorn

    from .app import Settings, create_app

    loopback = is_loopback(host)
    if not loopback:
        click.secho(
            f"Warning: binding to {host} makes the dashboard reachable from other machines; "
            "anyone with the token URL can read and label your data.",
            fg="yellow",
            err=True,
        )
    if port == 0:
        port = free_port(host)
    token = token or secrets.token_urlsafe(24)
    settings = Settings(
        db=str(db or default_db_path()),
        token=token,
        annotator=annotator,
        regenerate_provider=regenerate_provider,
        loopback_only=loopback,
        bind_host=host,
    )
    app = create_app(settings)
    search.sync(app.state.store)  # index what is new for full-text search before the first page
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/?token={token}"
    click.echo(f"Wilson dashboard for {settings.db}")
    click.echo(f"Open: {url}")
    click.echo("Press Ctrl-C to stop.")
    sys.stdout.flush()
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level="warning")
