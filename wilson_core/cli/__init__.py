"""The ``wilson`` command line.

Core commands live in the modules named in :data:`CORE_COMMANDS` (each has a
``register(cli)`` function); plugins add theirs through the
``wilson_register_commands`` hook.  Nothing heavy is imported at start-up.
"""

from __future__ import annotations

import sys
from importlib import import_module

import click

from wilson_core.errors import WilsonError

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
    "demo",
)

#: ``wilson --help`` lists commands in pipeline order; unknown (plugin) ones follow.
HELP_ORDER = (
    "runs", "show", "stats", "import", "dashboard", "annotate", "export", "model", "train",
    "eval", "deploy", "pipeline", "models", "plugins", "demo",
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
    help="SQLite database (default: $WILSON_DB or ~/.wilson/data.db).",
)
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """Wilson: capture your app's LLM calls, annotate, export, fine-tune, deploy.

    capture -> annotate -> export -> train -> deploy -> (switch, capture again)
    """
    ctx.ensure_object(dict)
    ctx.obj["db"] = db


def _register_all() -> None:
    for name in CORE_COMMANDS:
        import_module(f"{__name__}.{name}").register(cli)
    from wilson_core import plugins

    plugins.hook().wilson_register_commands(cli=cli)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wilson`` console script."""
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
        if type(exc).__module__ != "sqlite3":
            raise  # a bug: keep the traceback
        click.secho(f"Error: database error: {exc}", fg="red", err=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
