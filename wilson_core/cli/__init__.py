"""The ``wilson`` command line.

Core commands live in the modules named in :data:`CORE_COMMANDS` (each has a
``register(cli)`` function); plugins add theirs through the
``wilson_register_commands`` hook.  Nothing heavy is imported at start-up.
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module

import click

from wilson_core.errors import WilsonError

#: the logger of every library message (``logging.getLogger("wilson")`` and its children).
log = logging.getLogger("wilson")

#: core command modules, in the order ``wilson --help`` lists them.
CORE_COMMANDS = (
    "capture",
    "importing",
    "annotate",
    "export",
    "train",
    "deploy",
    "pipeline",
    "models",
    "plugins",
    "install",
    "setup",
    "demo",
    "logs",
    "doctor",
    "db",
)

#: ``wilson --help`` lists commands in pipeline order; unknown (plugin) ones follow.
HELP_ORDER = (
    "logs", "runs", "show", "stats", "import", "dashboard", "annotate", "export", "model", "train",
    "eval", "deploy", "pipeline", "models", "plugins", "install", "uninstall", "setup", "demo", "doctor", "db",
)


class WilsonGroup(click.Group):
    """Lists commands in the order of the pipeline."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {name: index for index, name in enumerate(HELP_ORDER)}
        return sorted(self.commands, key=lambda name: (rank.get(name, len(rank)), name))


@click.group(cls=WilsonGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wilson-core", prog_name="wilson")
@click.option(
    "--db",
    envvar="WILSON_DB",
    type=click.Path(dir_okay=False),
    help="SQLite database file or postgresql://user@host:port/db URL (default: $WILSON_DB or ~/.wilson/data.db).",
)
@click.option("-v", "--verbose", count=True, help="More messages (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.pass_context
def cli(ctx: click.Context, db: str | None, verbose: int, quiet: bool) -> None:
    """Wilson: capture your app's LLM calls, annotate, export, fine-tune, deploy.

    capture -> annotate -> export -> train -> deploy -> (switch, capture again)

    Every command also takes --db after its name (wilson runs --db FILE).
    Shell completion: eval "$(_WILSON_COMPLETE=bash_source wilson)" (zsh_source, fish_source).
    """
    ctx.ensure_object(dict)
    if db is not None or "db" not in ctx.obj:
        ctx.obj["db"] = db
    configure_logging(verbose=verbose, quiet=quiet)


class _StderrHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def configure_logging(*, verbose: int = 0, quiet: bool = False) -> None:
    """Send the ``wilson`` logger's messages to stderr: warnings by default, ``-v`` info, ``-vv`` debug."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO)[min(verbose, 1)]
    if verbose >= 2:
        level = logging.DEBUG
    log.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)


def _set_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj["db"] = value


def _db_after_command_option() -> click.Option:
    return click.Option(
        ["--db"], type=click.Path(dir_okay=False), expose_value=False, callback=_set_db,
        help="SQLite database or postgresql:// URL (the same as wilson --db before the command).",
    )


def _add_db_option(command: click.Command) -> None:
    """Let ``--db`` follow the command's name too (``wilson runs --db FILE``), at every level."""
    if not any("--db" in getattr(p, "opts", ()) for p in command.params):
        command.params.append(_db_after_command_option())
    if isinstance(command, click.Group) and not getattr(command, "_wilson_db_option", False):
        command._wilson_db_option = True  # type: ignore[attr-defined]
        for sub in command.commands.values():
            _add_db_option(sub)
        find = command.get_command  # also the commands a group makes on demand (export FORMAT)

        def get_command(ctx: click.Context, name: str) -> click.Command | None:
            sub = find(ctx, name)
            if sub is not None:
                _add_db_option(sub)
            return sub

        command.get_command = get_command  # type: ignore[method-assign]


def _register_all() -> None:
    for name in CORE_COMMANDS:
        import_module(f"{__name__}.{name}").register(cli)
    from wilson_core import plugins

    plugins.hook().wilson_register_commands(cli=cli)
    for command in cli.commands.values():
        _add_db_option(command)


def quiet_progress_bars_off_a_terminal() -> None:
    """No carriage-return progress bars (tqdm, Hugging Face downloads) when stderr is a log, not a terminal."""
    import os

    try:
        terminal = sys.stderr.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if not terminal:
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wilson`` console script."""
    quiet_progress_bars_off_a_terminal()
    try:
        _register_all()
        cli.main(args=argv, prog_name="wilson", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except WilsonError as exc:
        click.secho(f"Error: {exc}", fg="red", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except OSError as exc:  # a file the user named cannot be read or written
        click.secho(f"Error: {exc}", fg="red", err=True)
        return 1
    except Exception as exc:
        if type(exc).__module__ != "sqlite3" and not type(exc).__module__.startswith("psycopg"):
            raise  # a bug: keep the traceback
        click.secho(f"Error: database error: {exc}", fg="red", err=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
