"""``wilson install NAME...`` / ``wilson uninstall NAME...``: pip, in Wilson's own environment.

As ``llm install`` and ``datasette install`` do: the packages go into the
Python environment that runs ``wilson`` (``sys.executable -m pip``), so
plugins are found right away.
"""

from __future__ import annotations

import subprocess
import sys

import click


def register(cli: click.Group) -> None:
    cli.add_command(install_command)
    cli.add_command(uninstall_command)


def _pip(*args: str) -> int:
    command = [sys.executable, "-m", "pip", *args]
    try:
        return subprocess.call(command)
    except OSError as exc:  # pragma: no cover - the interpreter itself is running
        raise click.ClickException(f"could not run pip: {exc}") from None


def _check_pip() -> None:
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise click.ClickException(
            f"pip is not available in this environment ({sys.executable}); "
            f"install it with: {sys.executable} -m ensurepip"
        )


@click.command("install", context_settings={"ignore_unknown_options": False})
@click.argument("packages", nargs=-1, required=True)
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade packages to the latest version.")
@click.option("-e", "--editable", "editable", metavar="PATH", help="Install a project in editable mode.")
@click.option("--force-reinstall", is_flag=True, help="Reinstall even if already installed.")
@click.option("--no-cache-dir", is_flag=True, help="Do not use pip's cache.")
@click.option("-c", "--constraint", "constraints", multiple=True, metavar="FILE",
              help="Constrain versions with this file (pip -c; repeatable).")
@click.option("-f", "--find-links", "find_links", multiple=True, metavar="DIR",
              help="Look for wheels in this folder too (pip --find-links; repeatable).")
def install_command(
    packages: tuple[str, ...],
    upgrade: bool,
    editable: str | None,
    force_reinstall: bool,
    no_cache_dir: bool,
    constraints: tuple[str, ...],
    find_links: tuple[str, ...],
) -> None:
    """Install PACKAGES (plugins, wheels, paths) into Wilson's environment with pip.

    \b
    wilson install wilson-exporters wilson-train
    wilson install ./dist/wilson_gguf-0.1.0-py3-none-any.whl
    """
    _check_pip()
    args = ["install"]
    if upgrade:
        args.append("--upgrade")
    if force_reinstall:
        args.append("--force-reinstall")
    if no_cache_dir:
        args.append("--no-cache-dir")
    for path in constraints:
        args += ["-c", path]
    for folder in find_links:
        args += ["--find-links", folder]
    if editable:
        args += ["-e", editable]
    code = _pip(*args, *packages)
    if code:
        raise click.exceptions.Exit(code)


@click.command("uninstall")
@click.argument("packages", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def uninstall_command(packages: tuple[str, ...], yes: bool) -> None:
    """Uninstall PACKAGES from Wilson's environment with pip."""
    _check_pip()
    code = _pip("uninstall", *(["-y"] if yes else []), *packages)
    if code:
        raise click.exceptions.Exit(code)
