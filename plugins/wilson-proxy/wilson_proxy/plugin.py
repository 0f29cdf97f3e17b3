"""Hook implementation: the ``wilson proxy`` and ``wilson serve`` commands (light: servers load when they run)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from wilson_core import hookimpl

DEFAULT_PORT = 8787
SERVE_PORT = 8788


@hookimpl
def wilson_register_commands(cli: click.Group) -> None:
    cli.add_command(proxy_command)
    cli.add_command(serve_command)


def _config_path(config: str | None) -> Path | None:
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise click.UsageError(f"--config {config}: no such file")
        return path
    default = Path.cwd() / "pyproject.toml"
    return default if default.is_file() else None


def _run(settings, title: str) -> None:
    from .app import RunningProxy, print_banner
    from .routes import RouteError

    try:
        proxy = RunningProxy(settings)
    except RouteError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        proxy.run_forever(on_ready=lambda p: print_banner(p, click.echo, title))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    stats = proxy.recorder.stats() if proxy.recorder else None
    if stats is not None:
        click.echo(f"Stopped: {stats['recorded']} calls recorded, {stats['capture_errors']} could not be.")


@click.group("proxy", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs --allow-remote and --token.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port (0 picks a free one).")
@click.option("--upstream", "upstreams", multiple=True, metavar="[PROTOCOL=]URL",
              help="Base URL the SDK itself would use, per protocol (openai, anthropic, ollama); "
              "repeatable. Defaults: https://api.openai.com/v1, https://api.anthropic.com, "
              "http://127.0.0.1:11434.")
@click.option("--route", "routes", multiple=True, metavar='"MODE PROVIDER [KEY=VALUE ...]"',
              help="A route before those of [tool.wilson.proxy]: MODE local, shadow or fallback; KEYs model, "
              "call_type, header, sample, max_concurrency, timeout (see docs/deploy.md).")
@click.option("--config", type=click.Path(dir_okay=False),
              help="pyproject.toml with [tool.wilson.proxy] (default: ./pyproject.toml); re-read when it changes.")
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
    routes: tuple[str, ...],
    config: str | None,
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
    upstream. Routes (--route, [tool.wilson.proxy]) send matching calls to a local
    model: local, shadow or fallback. `wilson proxy routes` shows them.
    """
    if ctx.invoked_subcommand is not None:
        return
    from .app import ProxyConfigError, ProxySettings, check_binding
    from .routes import RouteError, read_config
    from .upstreams import UpstreamError, parse_upstream_options

    path = _config_path(config)
    try:
        check_binding(host, allow_remote, token)
        table = read_config(path) if path is not None else {}
        configured = table.get("upstreams") or {}
        if not isinstance(configured, dict):
            raise RouteError(f"{path}: [tool.wilson.proxy] upstreams must be a table of PROTOCOL = URL")
        chosen = parse_upstream_options([f"{k}={v}" for k, v in configured.items()] + list(upstreams))
    except (ProxyConfigError, UpstreamError, RouteError) as exc:
        raise click.UsageError(str(exc)) from None
    if not 0 <= port <= 65535:
        raise click.UsageError(f"--port must be 0-65535, got {port}")
    db = (ctx.find_root().obj or {}).get("db")
    settings = ProxySettings(upstreams=chosen, host=host, port=port, db=db, token=token, call_type=call_type,
                             record=not no_record, head_timeout=head_timeout, route_flags=routes, config=path)
    _run(settings, "Wilson proxy")


@proxy_command.command("routes")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port of the running proxy.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the running proxy.")
@click.option("--token", envvar="WILSON_PROXY_TOKEN", help="The proxy's token, if it has one.")
@click.option("--config", type=click.Path(dir_okay=False), help="Shown when no proxy runs (default: ./pyproject.toml).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def routes_command(port: int, host: str, token: str | None, config: str | None, as_json: bool) -> None:
    """Show the active routes of a running proxy, with recent call counts and latency."""
    import urllib.error
    import urllib.request

    shown = f"[{host}]" if ":" in host else host
    request = urllib.request.Request(f"http://{shown}:{port}/wilson/routes",
                                     headers={"X-Wilson-Token": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            data = json.loads(answer.read())
        running = True
    except (urllib.error.URLError, OSError, ValueError) as exc:
        from .routes import RouteError, load_routes

        path = _config_path(config)
        try:
            routes = load_routes(path)
        except RouteError as exc2:
            raise click.ClickException(str(exc2)) from None
        click.echo(f"No proxy answers on {host}:{port} ({getattr(exc, 'reason', exc)}); "
                   f"routes configured in {path or 'no pyproject.toml'}:", err=True)
        data = {"routes": [{"name": r.name, "mode": r.mode, "provider": r.provider, "match": r.describe(),
                            "counts": {}, "p50_ms": None, "shadow_p50_ms": None} for r in routes]}
        running = False
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data["routes"]:
        click.echo("No routes: every call goes upstream.")
        return
    for route in data["routes"]:
        click.echo(f"{route['name']}: {route['mode']} -> {route['provider']} for {route['match']}")
        if running and route["provider"] == "registry:live":  # what the registry's live model is now
            click.echo(f"  serves {route.get('serves') or 'nothing: no model is live, calls go upstream'}")
        if running:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(route["counts"].items())) or "no calls yet"
            latency = [f"local p50 {route['p50_ms']} ms"] if route.get("p50_ms") is not None else []
            if route.get("shadow_p50_ms") is not None:
                latency.append(f"shadow p50 {route['shadow_p50_ms']} ms")
            click.echo(f"  {counts}" + (f"; {', '.join(latency)}" if latency else ""))


@click.command("serve")
@click.argument("deployment")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs --allow-remote and --token.")
@click.option("--port", default=SERVE_PORT, show_default=True, type=int, help="Port (0 picks a free one).")
@click.option("--model-name", help="The model name /v1/models lists (default: the deployment's name).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Passed to the provider driver.")
@click.option("--allow-remote", is_flag=True, help="Allow binding an address other machines can reach.")
@click.option("--token", envvar="WILSON_PROXY_TOKEN", help="Clients must send it as X-Wilson-Token.")
@click.option("--call-type", default="agent", show_default=True,
              help="Call type of requests without an X-Wilson-Call-Type header.")
@click.option("--no-record", is_flag=True, help="Serve only; record nothing.")
@click.option("--max-tokens", "max_tokens_limit", type=click.IntRange(min=1),
              help="The longest answer served: requests that ask for more get a 400, those that do not say "
                   "get this many tokens at most.")
@click.pass_context
def serve_command(
    ctx: click.Context,
    deployment: str,
    host: str,
    port: int,
    model_name: str | None,
    options: tuple[str, ...],
    allow_remote: bool,
    token: str | None,
    call_type: str,
    no_record: bool,
    max_tokens_limit: int | None,
) -> None:
    """Serve a deployed model as an OpenAI-compatible (and Anthropic /v1/messages) endpoint.

    DEPLOYMENT is a GGUF file (llama.cpp), a folder with an ONNX model (onnxruntime), a
    transformers folder, or NAME:MODEL for any provider (ollama:qwen2.5, ...). Requests are
    queued and answered one at a time; every call is recorded like any other.

    \b
    OPENAI_BASE_URL=http://127.0.0.1:8788/v1       /v1/chat/completions, /v1/responses, /v1/models
    ANTHROPIC_BASE_URL=http://127.0.0.1:8788       /v1/messages
    OLLAMA_HOST=http://127.0.0.1:8788              /api/chat
    """
    from wilson_core.errors import WilsonError
    from wilson_core.settings import parse_key_values

    from .app import ProxyConfigError, ProxySettings, check_binding
    from .serving import DeploymentError, provider_spec

    try:
        check_binding(host, allow_remote, token)
        spec = provider_spec(deployment)
        provider_options = parse_key_values(options, flag="--option")
        from .local import LocalModel

        LocalModel(spec).check()
    except (ProxyConfigError, DeploymentError, WilsonError) as exc:
        raise click.UsageError(str(exc)) from None
    name = model_name or Path(spec.split(":", 1)[1]).name or spec
    route = json.dumps(provider_options)
    db = (ctx.find_root().obj or {}).get("db")
    settings = ProxySettings(upstreams={}, host=host, port=port, db=db, token=token, call_type=call_type,
                             record=not no_record, route_flags=(f"local {_quote(spec)} options={_quote(route)}",),
                             served_model=name, max_tokens_limit=max_tokens_limit)
    _run(settings, f"Wilson serve ({spec})")


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
