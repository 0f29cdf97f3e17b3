"""``wilson deploy NAME``: turn a trained model into a local runtime's artefacts.

NAME is any ``wilson.deployers`` driver (``gguf``, ``ollama``, ``transformersjs``,
third-party ones).  The command prints the files written, the checks run with
``--verify`` and the provider string that makes the app use the deployed model.
"""

from __future__ import annotations

from typing import Any

import click

from ._common import echo_json, json_option


def register(cli: click.Group) -> None:
    cli.add_command(deploy_command)


def _parse_options(values: tuple[str, ...]) -> dict[str, Any]:
    from wilson_core.interfaces import DeployError
    from wilson_core.settings import parse_key_values

    return parse_key_values(values, error=DeployError, normalise=False)


def _show(report: Any) -> None:
    click.secho(f"Deployed with {report.target!r} to {report.out} in {report.seconds:.1f} s", bold=True)
    for path in report.files:
        click.echo(f"  {path}")
    if report.checks:
        click.secho("Checks:", bold=True)
        for check in report.checks:
            mark = click.style("PASS", fg="green") if check.passed else click.style("FAIL", fg="red")
            click.echo(f"  {mark} {check.name}: {check.detail}")
    for note in report.notes:
        click.echo(note)
    if report.provider:
        click.secho("Use it from your app:", bold=True)
        click.echo(f'  wilson_core.LLM(provider="{report.provider}")')
        click.echo(f"provider: {report.provider}")


@click.command("deploy")
@click.argument("name")
@click.option("--model", "model", required=True, type=click.Path(),
              help="Model folder: the merged model, or the base model when --adapter is given.")
@click.option("--adapter", type=click.Path(), help="PEFT LoRA adapter folder trained on --model.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output folder (must be empty unless --force).")
@click.option("--quant", help="Precision / quantisation type (e.g. f32, f16, bf16, q8_0, int8).")
@click.option("--verify", is_flag=True,
              help="Load the result in its runtime and compare it with PyTorch; exit 3 if a check fails.")
@click.option("--host", help="Server to deploy to, for targets that have one (Ollama).")
@click.option("--name", "model_name", help="Name of the deployed model, for targets that name models.")
@click.option("--force", is_flag=True, help="Write into a non-empty output folder.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="Deployer-specific setting (repeatable; VALUE parsed as JSON when it can be).")
@json_option
def deploy_command(
    name: str,
    model: str,
    adapter: str | None,
    out: str,
    quant: str | None,
    verify: bool,
    host: str | None,
    model_name: str | None,
    force: bool,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Deploy a trained model with the deployer NAME (see `wilson plugins`)."""
    from pathlib import Path

    from wilson_core import plugins
    from wilson_core.deployment import report_dict, run_deployer
    from wilson_core.interfaces import (
        DEPLOYERS,
        DeployConfig,
        Deployer,
        DeployError,
        VerificationFailed,
    )

    if not Path(model).is_dir():
        raise DeployError(f"--model {model} is not a folder")
    if adapter is not None and not Path(adapter).is_dir():
        raise DeployError(f"--adapter {adapter} is not a folder")
    config = DeployConfig(
        model=str(model),
        out=str(out),
        adapter=str(adapter) if adapter else None,
        quant=quant,
        verify=verify,
        host=host,
        force=force,
        name=model_name,
        options=_parse_options(options),
    )
    cls = plugins.load_driver(DEPLOYERS, name)
    deployer = cls()
    if not isinstance(deployer, Deployer):
        raise DeployError(f"deployer {name!r} does not implement wilson_core.interfaces.Deployer")
    # OUT/wilson-deploy.json (what was deployed and verified) and README.md (the card), for every deployer
    report = run_deployer(deployer, config)
    if as_json:
        echo_json(report_dict(report))
    else:
        _show(report)
    if not report.passed:
        failed = ", ".join(c.name for c in report.checks if not c.passed)
        raise VerificationFailed(f"verification failed: {failed} (artefacts kept in {report.out})")
