"""``wilson db copy SRC DST``: move a whole store between SQLite and PostgreSQL."""

from __future__ import annotations

import click

from ._common import echo_json, json_option, table


def register(cli: click.Group) -> None:
    cli.add_command(db_group)


@click.group("db")
def db_group() -> None:
    """Whole-store operations: copy between SQLite files and PostgreSQL databases."""


@db_group.command("copy")
@click.argument("source")
@click.argument("target")
@json_option
def copy_command(source: str, target: str, as_json: bool) -> None:
    """Copy every run, call, blob, tool result, label version and pair of SOURCE into TARGET.

    SOURCE and TARGET are SQLite files or postgresql://user@host:port/db URLs.
    Idempotent and resumable: run it again after an interruption; rows already
    in TARGET are kept, not doubled.  Prints the rows per table at the end.
    """
    from wilson_core.errors import StoreError
    from wilson_core.store import open_store
    from wilson_core.store.copying import copy_store

    if source == target:
        raise click.UsageError("SOURCE and TARGET are the same store")
    src = open_store(source, create=False)
    try:
        dst = open_store(target, create=True, accept_empty=False)
    except StoreError:
        src.close()
        raise
    try:
        report = copy_store(src, dst)
    finally:
        src.close()
        dst.close()
    if as_json:
        echo_json(report)
        return
    rows = [{"table": name, **counts} for name, counts in report.items()]
    click.echo(table(rows, ["table", "source", "copied", "target"]))
