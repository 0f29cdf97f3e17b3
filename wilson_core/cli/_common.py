"""Small helpers shared by CLI commands."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def open_db(ctx: click.Context, *, create: bool = False) -> Any:
    """The store named by ``--db`` / ``$WILSON_DB`` / the default path (opened once per command)."""
    from wilson_core.store import open_store

    root = ctx.find_root()
    path = (root.obj or {}).get("db")
    cached = root.meta.get("wilson.store")
    if cached is not None and cached[0] == path:
        return cached[1]
    store = open_store(path, create=create, accept_empty=False)  # an empty file may be anyone's
    root.meta["wilson.store"] = (path, store)
    return store


def resolving_ids(**kinds: str | tuple[str, ...]) -> Callable[[F], F]:
    """Let the named parameters take short ids: each is replaced by the full id it names.

    ``kinds`` maps a parameter name to ``"interaction"``, ``"run"`` or both
    (a tuple).  A parameter that holds a tuple of ids has each resolved.
    Put it below ``@click.pass_context``::

        @click.pass_context
        @resolving_ids(interaction_id="interaction")
        def rate(ctx, interaction_id, ...): ...
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from wilson_core.store.listing import resolve_id

            present = [name for name in kinds if kwargs.get(name)]
            if present:
                store = open_db(click.get_current_context())
                for name in present:
                    value = kwargs[name]
                    if isinstance(value, (tuple, list)):
                        kwargs[name] = tuple(resolve_id(store, v, kinds[name]) for v in value)
                    else:
                        kwargs[name] = resolve_id(store, value, kinds[name])
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def wilson_command() -> str:
    """How to type ``wilson`` so that it runs this installation, for commands Wilson prints.

    ``$WILSON_COMMAND`` (``nox -s demo`` sets the full path of its environment's
    ``wilson``, which is not on the user's PATH), else ``wilson``.
    """
    import os
    import shlex

    command = os.environ.get("WILSON_COMMAND")
    return shlex.quote(command) if command else "wilson"


def db_option_path(ctx: click.Context) -> str | None:
    return (ctx.find_root().obj or {}).get("db")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain aligned text table."""
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        lines.append("  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."
