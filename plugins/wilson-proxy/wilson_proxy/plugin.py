"""Hook implementation: the ``wilson proxy`` command (kept light: the server loads when it runs)."""

from __future__ import annotations

import click

from wilson_core import hookimpl

DEFAULT_PORT = 8787


@hookimpl
def wilson_register_commands(cli: click.Group) -> None:
    cli.add_command(proxy_command)


@click.command("proxy")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs --allow-remote and --token.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port (0 picks a free one).")
@click.option("--upstream", "upstreams", multiple=True, metavar="[PROTOCOL=]URL",
              help="Base URL the SDK itself would use, per protocol (openai, anthropic, ollama); "
              "repeatable. Defaults: https://api.openai.com/v1, https://api.anthropic.com, "
              "http://127.0.0.1:11434.")
@click.option("--allow-remote", is_flag=True, help="Allow binding an address other machines can reach.")
@click.option("--token", envvar="WILSON_PROXY_TOKEN",
              help="Clients must send it as X-Wilson-Token (required with --allow-remote).")
@click.option("--call-type", default="agent", show_default=True,
              help="Call type of requests without an X-Wilson-Call-Type header.")
@click.option("--no-record", is_flag=True, help="Relay only; record nothing.")
@click.option("--timeout", "head_timeout", default=600.0, show_default=True, type=float,
              help="Seconds an upstream may take to start answering.")
@click.pass_context
def proxy_command(
    ctx: click.Context,
    host: str,
    port: int,
    upstreams: tuple[str, ...],
    allow_remote: bool,
    token: str | None,
    call_type: str,
    no_record: bool,
    head_timeout: float,
) -> None:
    """Record the LLM calls of an app in any language: point its SDK here.

    \b
    OPENAI_BASE_URL=http://127.0.0.1:8787/v1     /v1/chat/completions, /v1/responses, /v1/models
    ANTHROPIC_BASE_URL=http://127.0.0.1:8787     /v1/messages
    OLLAMA_HOST=http://127.0.0.1:8787            /api/chat

    Requests and answers (streams too) are relayed unchanged; auth headers go
    upstream untouched and are never stored. X-Wilson-Run-Id, X-Wilson-Call-Type
    and X-Wilson-Metadata (a JSON object) group calls into runs; they are not sent
    upstream.
    """
    from .app import ProxyConfigError, ProxySettings, RunningProxy, check_binding, print_banner
    from .upstreams import UpstreamError, parse_upstream_options

    try:
        check_binding(host, allow_remote, token)
        chosen = parse_upstream_options(upstreams)
    except (ProxyConfigError, UpstreamError) as exc:
        raise click.UsageError(str(exc)) from None
    if not 0 <= port <= 65535:
        raise click.UsageError(f"--port must be 0-65535, got {port}")
    db = (ctx.find_root().obj or {}).get("db")
    settings = ProxySettings(upstreams=chosen, host=host, port=port, db=db, token=token, call_type=call_type,
                             record=not no_record, head_timeout=head_timeout)
    proxy = RunningProxy(settings)
    try:
        proxy.run_forever(on_ready=lambda p: print_banner(p, click.echo))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stats = proxy.recorder.stats() if proxy.recorder else None
    if stats is not None:
        click.echo(f"Stopped: {stats['recorded']} calls recorded, {stats['capture_errors']} could not be.")
